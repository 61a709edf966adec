"""Turns V1's deltas into `progress` events at a bounded rate.

V1 may stream hundreds of tiny deltas a second; one event per `interval` at most keeps the
event log, pub/sub and every client's socket proportional to time, not to tokens. Nothing
is dropped: deltas are concatenated, so the events still add up to the final text.
"""

from __future__ import annotations

import time
from typing import Any

import gevent
from gevent.lock import Semaphore

from app.live import LiveStore
from tasks.errors import LeaseLost


class ProgressEmitter:
    def __init__(self, live: LiveStore, task_id: str, token: str, interval: float) -> None:
        self.live = live
        self.task_id = task_id
        self.token = token
        self.interval = interval
        self._buffer: list[str] = []
        self._last_emit = 0.0
        self._timer: Any = None
        self._owner = gevent.getcurrent()
        self._lock = Semaphore()  # keeps deltas in order when the timer and the run overlap

    def add(self, delta: str) -> None:
        self._buffer.append(delta)
        if time.monotonic() - self._last_emit >= self.interval:
            self.flush()
        elif self._timer is None:
            # Deltas may pause right after this one: make sure it goes out on time anyway.
            self._timer = gevent.spawn_later(self.interval, self._timed_flush)

    def _timed_flush(self) -> None:
        self._timer = None
        try:
            self.flush()
        except LeaseLost as exc:
            self._owner.kill(exc, block=False)

    def flush(self) -> None:
        if self._timer is not None and self._timer is not gevent.getcurrent():
            self._timer.kill(block=False)
            self._timer = None
        with self._lock:
            if not self._buffer:
                return
            text = "".join(self._buffer)
            self._buffer.clear()
            self._last_emit = time.monotonic()
            if self.live.run(self.live.calls.progress(self.task_id, self.token, text)) == -1:
                raise LeaseLost("another attempt owns this task")

    def close(self) -> None:
        if self._timer is not None:
            self._timer.kill(block=False)
            self._timer = None
