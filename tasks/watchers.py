"""The watchers of a worker process: one purpose and one greenlet each, not one per task.

- `tasks.lease_renewer.LeaseRenewer` (its own module: it runs on a native thread) renews
  every running task's lease;
- `DeadlineWatcher` enforces run-time limits, promoting a short-tier task to the long tier
  once, and stops a task V1 has sent no output for STALL_SECONDS (`tasks.stalls`);
- `CancelListener` stops a task at once when the gateway publishes a cancel for it;
- `RevokeWatcher` turns revokes received through the celery CLI or Flower into
  cancellations in the task record (Celery only keeps them in the worker's memory).

The recycler (`tasks.recycling`) is a watcher too; `tasks.supervision` starts and stops
them all.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import gevent
import redis
from greenlet import GreenletExit

from taskrecord import keys
from taskrecord.dispatch import task_id_of
from tasks.errors import TaskCancelled, TaskTimeLimit
from tasks.running import RunningTasks
from tasks.runtime import WorkerRuntime
from tasks.stalls import StallCheck

log = logging.getLogger(__name__)
TICK = 0.5


class Watcher:
    """One greenlet running `run()`; `close()` runs once that greenlet has stopped."""

    name = "watcher"

    def __init__(self) -> None:
        self.greenlet: Any = None

    def start(self) -> None:
        self.greenlet = gevent.spawn(self.run)

    def run(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the watcher holds (its greenlet is dead by now)."""


class PeriodicWatcher(Watcher):
    """`round()` every `interval` seconds; a failed round is logged and the next one runs,
    after `retry_interval` (a watcher whose rounds must not wait a whole interval once Redis
    answers again sets it shorter)."""

    interval = TICK
    retry_interval: float | None = None  # None: the interval

    def run(self) -> None:
        while True:
            gevent.sleep(self.round_then_pause())

    def round_then_pause(self) -> float:
        """One round; how long until the next one."""
        try:
            self.round()
        except Exception:  # keep watching whatever one round hit
            log.exception("%s round failed", self.name)
            return self.retry_interval or self.interval
        return self.interval

    def round(self) -> None:
        raise NotImplementedError


class DeadlineWatcher(PeriodicWatcher):
    name = "deadline watcher"

    def __init__(self, runtime: WorkerRuntime, running: RunningTasks) -> None:
        super().__init__()
        self.runtime = runtime
        self.running = running
        stall = runtime.settings.stall_seconds
        self.stalls = StallCheck(runtime.redis, stall) if stall > 0 else None

    def round(self) -> None:
        self._deadlines()
        if self.stalls is not None and self.stalls.due(time.monotonic()):
            for task in self.stalls.stalled(list(self.running.values()), time.monotonic()):
                log.info("task %s stalled: no output from V1", task.task_id)
                task.stop(self.stalls.error())

    def _deadlines(self) -> None:
        now = time.time()
        for task in list(self.running.values()):
            if now < task.deadline:
                continue
            if task.promote_to is not None:
                log.info("task %s promoted to the long tier", task.task_id)
                task.deadline, task.promote_to = task.promote_to, None
                self.runtime.redis.hset(
                    keys.task_key(task.task_id), mapping={"tier": "long", "promoted": "1"}
                )
                continue
            task.stop(TaskTimeLimit("the task ran past its time limit"))


class CancelListener(Watcher):
    """Subscribed to the control channel; resubscribes after a lost connection."""

    name = "cancel listener"

    def __init__(self, runtime: WorkerRuntime, running: RunningTasks) -> None:
        super().__init__()
        self.runtime = runtime
        self.running = running

    def run(self) -> None:
        while True:
            pubsub = self.runtime.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
            try:
                pubsub.subscribe(keys.CONTROL_CHANNEL)
                for message in pubsub.listen():
                    command, _, task_id = message["data"].decode().partition(" ")
                    task = self.running.get(task_id)
                    if command == "cancel" and task is not None:
                        task.stop(TaskCancelled("cancelled by request"))
            except redis.RedisError:
                log.warning("control channel lost; resubscribing")
                gevent.sleep(1)
            except GreenletExit:  # the worker is stopping
                return
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()


class RevokeWatcher(PeriodicWatcher):
    name = "revoke watcher"

    def __init__(self, runtime: WorkerRuntime) -> None:
        super().__init__()
        self.runtime = runtime
        self._seen: set[str] | None = None

    def round(self) -> None:
        from celery.worker import state as worker_state

        current = set(worker_state.revoked._data)
        if self._seen is None:
            # Revokes learnt at start-up (mingle) may be hours old: act only on new ones.
            self._seen = current
            return
        fresh = current - self._seen
        self._seen = current
        for message in fresh:
            task_id = task_id_of(message)
            outcome = self.runtime.control.cancel(task_id, "revoked by an operator")
            log.info("revoke of %s -> %s", task_id, outcome.state)
