"""Starts and stops the watchers of this worker process (`tasks.watchers`,
`tasks.recycling`), and keeps the table of running tasks they watch.

One watcher per purpose, each in its own greenlet (lease renewal on a native thread of its
own: `tasks.lease_renewer`): lease renewal, deadlines (time limits and
the one-time promotion), cancel messages on the control channel, revokes from the celery CLI
or Flower, and the recycler (memory guard and lifetime).
"""

from __future__ import annotations

import logging

import gevent

from tasks.lease_renewer import LeaseRenewer
from tasks.recycling import Recycler
from tasks.running import RunningTask, RunningTasks
from tasks.runtime import WorkerRuntime
from tasks.watchers import CancelListener, DeadlineWatcher, RevokeWatcher, Watcher

__all__ = ["RunningTask", "Supervisor"]

log = logging.getLogger(__name__)
STOP_TIMEOUT = 5.0


class Supervisor:
    def __init__(self, runtime: WorkerRuntime) -> None:
        self.runtime = runtime
        self.running: RunningTasks = {}
        self.recycler = Recycler(runtime)
        self.watchers: list[Watcher] = [
            LeaseRenewer(runtime, self.running),
            DeadlineWatcher(runtime, self.running),
            CancelListener(runtime, self.running),
            RevokeWatcher(runtime),
            self.recycler,
        ]

    def start(self) -> None:
        for watcher in self.watchers:
            watcher.start()

    def stop(self) -> None:
        """Stop every watcher and wait for it, before the runtime closes the Redis client
        they use (a greenlet killed inside a read of a closed connection raised
        `ValueError: I/O operation on closed file` at exit)."""
        greenlets = [w.greenlet for w in self.watchers if w.greenlet is not None]
        gevent.killall(greenlets, block=True, timeout=STOP_TIMEOUT)
        for watcher in self.watchers:
            try:
                watcher.close()
            except Exception as exc:  # best effort (Redis may be gone): the worker exits anyway
                log.warning("closing the %s failed: %s", watcher.name, exc)

    def add(self, task: RunningTask) -> None:
        self.running[task.task_id] = task

    def remove(self, task_id: str) -> None:
        self.running.pop(task_id, None)
