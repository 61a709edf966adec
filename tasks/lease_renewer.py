"""Renews the lease of every task this worker process runs, on a native thread of its own.

A dead process stops renewing, and `tasks.maintenance` re-dispatches its tasks once their
lease has run out. A live one must therefore renew on time whatever its greenlets do: as a
greenlet the renewer waited its turn behind every ready one, and when 10,000 60 s V1 calls
ended together on this 2-core box (a thousand finishing greenlets a process), its rounds came
more than a lease late; live workers lost leases and maintenance re-ran their tasks
(`bench.inflight_10k`: 529 and 949 re-runs in two of four runs, V1 called twice for
each). A native thread gets the GIL within the interpreter's switch interval whatever the
hub's queue holds, so it uses a Redis client of its own, and hands what it learns (a lease
lost, a cancel) to the hub with `run_callback_threadsafe`.

It renews only while the hub shows it is alive (a greenlet beats every TICK): a process
whose hub is stuck (a greenlet that never yields) stops renewing after HUB_SILENT_SECONDS
and still loses its tasks to another worker.

Without gevent (a solo worker, a test) the renewer is a greenlet watcher as before.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import gevent
import redis
from gevent import monkey

from taskrecord.redis_client import redis_client
from tasks.errors import LeaseLost, TaskCancelled
from tasks.gevent_mode import gevent_patched
from tasks.running import RunningTask, RunningTasks
from tasks.runtime import WorkerRuntime
from tasks.watchers import TICK, PeriodicWatcher

log = logging.getLogger(__name__)
RENEW_BATCH = 50  # leases renewed per script call
STOP_TIMEOUT = 5.0


class LeaseRenewer(PeriodicWatcher):
    name = "lease renewer"

    def __init__(self, runtime: WorkerRuntime, running: RunningTasks) -> None:
        super().__init__()
        self.runtime = runtime
        self.running = running
        lease = runtime.settings.lease_seconds
        self.interval = max(0.5, lease / 3)
        # A failed renewal (Redis restarting, a Sentinel failover) is tried again every tick:
        # after a whole interval (lease / 3) a lease last renewed just before the outage
        # could run out first, and its task would be re-run beside the one still running.
        self.retry_interval = min(TICK, self.interval)
        # Two leases: a hub this silent is stuck, not busy (a storm of endings takes seconds).
        self.hub_silent_seconds = 2 * lease
        self.hub_seen = time.monotonic()
        self._thread_stop: Any = None  # a native lock, held until the thread must stop
        self._thread_done: Any = None  # a native lock, released when the thread has ended
        self._hub_loop: Any = None
        self._client: redis.Redis = runtime.redis
        self._silent_logged = False

    def start(self) -> None:
        if not gevent_patched():
            super().start()
            return
        allocate_lock = monkey.get_original("_thread", "allocate_lock")
        start_new_thread = monkey.get_original("_thread", "start_new_thread")
        self._hub_loop = gevent.get_hub().loop
        self._thread_stop, self._thread_done = allocate_lock(), allocate_lock()
        self._thread_stop.acquire()
        self._thread_done.acquire()
        self.hub_seen = time.monotonic()
        self.greenlet = gevent.spawn(self._beat)
        start_new_thread(self._thread_main, ())

    def _beat(self) -> None:
        while True:
            self.hub_seen = time.monotonic()
            gevent.sleep(TICK)

    def _thread_main(self) -> None:
        try:
            # Its own client, made on this thread: gevent's sockets belong to one thread.
            self._client = redis_client(
                self.runtime.settings, socket_keepalive=True, health_check_interval=25
            )
            pause = 0.0
            while not self._thread_stop.acquire(timeout=pause):
                pause = self.round_then_pause()
        finally:
            if self._client is not self.runtime.redis:
                self._client.close()
            self._thread_done.release()

    def close(self) -> None:
        if self._thread_stop is not None:
            self._thread_stop.release()
            if not self._thread_done.acquire(timeout=STOP_TIMEOUT):
                log.warning("the lease renewer's thread did not stop in %ss", STOP_TIMEOUT)

    def round(self) -> None:
        tasks = list(self.running.values())
        if not tasks:
            return
        if self._hub_loop is not None and not self._hub_alive():
            return
        live = self.runtime.live
        lease = self.runtime.settings.lease_seconds
        pipe = self._client.pipeline(transaction=False)
        # Batches, not one script per task: at 1,000 tasks a process, half Valkey's CPU and
        # a fifth of ours; small enough that no batch holds Valkey up for long.
        for at in range(0, len(tasks), RENEW_BATCH):
            batch = [(task.task_id, task.token) for task in tasks[at : at + RENEW_BATCH]]
            live.run(live.calls.renew_many(batch, lease), pipeline=pipe)
        outcomes = [outcome for answer in pipe.execute() for outcome in answer]
        for task, outcome in zip(tasks, outcomes, strict=True):
            text = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
            if text == "lost":
                self._stop(task, LeaseLost("another attempt owns this task"))
            elif text == "cancel":
                self._stop(task, TaskCancelled("cancelled by request"))

    def _hub_alive(self) -> bool:
        silent = time.monotonic() - self.hub_seen
        if silent <= self.hub_silent_seconds:
            self._silent_logged = False
            return True
        if not self._silent_logged:
            self._silent_logged = True
            log.error("event loop silent for %.0fs: leases left to run out", silent)
        return False

    def _stop(self, task: RunningTask, error: BaseException) -> None:
        """Stop the task on the hub (its greenlet lives there), not on this thread."""
        if self._hub_loop is None:
            task.stop(error)
        else:
            self._hub_loop.run_callback_threadsafe(task.stop, error)
