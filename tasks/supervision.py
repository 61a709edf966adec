"""Watches the tasks running in this worker process (one greenlet each, not one per task).

- renews every running task's lease in one pipeline (a dead process stops renewing, and
  `tasks.maintenance` re-dispatches its tasks once the lease runs out);
- enforces run-time limits, promoting a short-tier task to the long tier once;
- stops a task at once when the gateway publishes a cancel for it;
- turns revokes received through the celery CLI or Flower into cancellations in the
  task record (Celery only keeps them in the worker's memory).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent
import redis
from greenlet import GreenletExit

from app import keys
from tasks.dispatch import task_id_of
from tasks.errors import LeaseLost, TaskCancelled, TaskTimeLimit

if TYPE_CHECKING:
    from tasks.runtime import WorkerRuntime

log = logging.getLogger(__name__)
TICK = 0.5


@dataclass
class RunningTask:
    """A task running here. `stop()` interrupts it only inside `interruptible()` (the V1
    call): an interruption landing while the task records its outcome would lose it."""

    task_id: str
    token: str
    greenlet: Any
    deadline: float  # unix time the current tier's limit runs out
    promote_to: float | None  # a later deadline granted once (short -> long tier), or None
    stop_reason: BaseException | None = field(default=None)
    _interruptible: bool = field(default=False)

    def stop(self, error: BaseException) -> None:
        if self.stop_reason is not None:
            return  # the first reason wins; one interruption per task
        self.stop_reason = error
        if self._interruptible:
            self._interruptible = False
            self.greenlet.kill(error, block=False)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        if self.stop_reason is not None:
            raise self.stop_reason
        self._interruptible = True
        try:
            yield
        finally:
            # No switch to the hub can happen between the call's end and this line.
            self._interruptible = False


class Supervisor:
    def __init__(self, runtime: WorkerRuntime) -> None:
        self.runtime = runtime
        self.running: dict[str, RunningTask] = {}
        self._greenlets: list[Any] = []
        self._seen_revokes: set[str] | None = None
        self.recycler = Recycler(runtime.settings)

    def start(self) -> None:
        self._greenlets = [gevent.spawn(self._loop), gevent.spawn(self._listen)]

    def stop(self) -> None:
        gevent.killall(self._greenlets, block=False)

    def add(self, task: RunningTask) -> None:
        self.running[task.task_id] = task

    def remove(self, task_id: str) -> None:
        self.running.pop(task_id, None)

    def _loop(self) -> None:
        renew_every = max(0.5, self.runtime.settings.lease_seconds / 3)
        last_renew = 0.0
        while True:
            try:
                self._enforce_deadlines()
                if time.monotonic() - last_renew >= renew_every:
                    self._renew_leases()
                    last_renew = time.monotonic()
                self._watch_revokes()
                self.recycler.check()
            except Exception:  # keep supervising whatever one round hit
                log.exception("supervisor round failed")
            gevent.sleep(TICK)

    def _enforce_deadlines(self) -> None:
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

    def _renew_leases(self) -> None:
        tasks = list(self.running.values())
        if not tasks:
            return
        live = self.runtime.live
        lease = self.runtime.settings.lease_seconds
        pipe = self.runtime.redis.pipeline(transaction=False)
        script = live.script(live.calls.renew("", "", 0).source)
        for task in tasks:
            call = live.calls.renew(task.task_id, task.token, lease)
            script(keys=list(call.keys), args=list(call.args), client=pipe)
        for task, outcome in zip(tasks, pipe.execute(), strict=True):
            text = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
            if text == "lost":
                task.stop(LeaseLost("another attempt owns this task"))
            elif text == "cancel":
                task.stop(TaskCancelled("cancelled by request"))

    def _listen(self) -> None:
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

    def _watch_revokes(self) -> None:
        from celery.worker import state as worker_state

        current = set(worker_state.revoked._data)
        if self._seen_revokes is None:
            # Revokes learnt at start-up (mingle) may be hours old: act only on new ones.
            self._seen_revokes = current
            return
        fresh = current - self._seen_revokes
        self._seen_revokes = current
        for message in fresh:
            task_id = task_id_of(message)
            outcome = self.runtime.control.cancel(task_id, "revoked by an operator")
            log.info("revoke of %s -> %s", task_id, outcome.state)


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1_048_576


class Recycler:
    """Memory guard and lifetime: stop taking work, finish what is held, exit.

    The process supervisor (supervisord under `make run`, the orchestrator in deploy/)
    starts a fresh worker. Celery's own max_memory_per_child is prefork-only.
    """

    def __init__(self, settings: Any) -> None:
        self.max_mb = settings.worker_max_memory_mb
        self.max_lifetime = settings.worker_max_lifetime
        self.started = time.monotonic()
        self.draining = False
        self._last_check = time.monotonic()  # first look after one interval

    def check(self) -> None:
        from celery.worker import state as worker_state

        from tasks.queue_control import CONSUMER

        if self.draining:
            if not worker_state.active_requests:
                log.warning("worker drained: exiting to be replaced")
                os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown
            return
        if time.monotonic() - self._last_check < 5:
            return
        self._last_check = time.monotonic()
        reason = ""
        if (used := rss_mb()) > self.max_mb:
            reason = f"memory {used:.0f} MB above {self.max_mb} MB"
        elif self.max_lifetime and time.monotonic() - self.started > self.max_lifetime:
            reason = f"lifetime {self.max_lifetime:.0f}s reached"
        if reason and CONSUMER is not None:
            log.warning("%s: no longer taking tasks, finishing the ones held", reason)
            self.draining = True
            for queue in [q.name for q in CONSUMER.task_consumer.queues]:
                CONSUMER.cancel_task_queue(queue)
