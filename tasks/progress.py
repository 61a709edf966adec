"""Turns V1's deltas into `progress` events at a bounded rate.

V1 may stream hundreds of tiny deltas a second; one event per `interval` at most keeps the
event log, pub/sub and every client's socket proportional to time, not to tokens. Nothing
is dropped: deltas are concatenated, so the events still add up to the final text.

A due flush waits for the run's next pause (the moment it waits for more of V1's stream):
text that arrives together with the end of the stream (a short answer) is not sent on its
own but carried by the end's script (`take`), one Redis call instead of two; while V1
streams, the flush goes out as soon as the run waits for V1's next chunk.

Redis away for a moment (a Sentinel failover, a cut link) does not end the run: the text
waits and goes out with the next flush, sent with the count of what already landed so a
delta whose answer was lost is not appended twice. Whether this attempt still owns the
task once Redis answers again is the lease renewer's to find out (tasks/watchers.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import gevent
import redis
from gevent.lock import Semaphore

from taskrecord.live import LiveStore
from tasks.errors import LeaseLost


class ProgressEmitter:
    def __init__(
        self,
        live: LiveStore,
        task_id: str,
        token: str,
        interval: float,
        on_lost: Callable[[LeaseLost], None],
    ) -> None:
        self.live = live
        self.task_id = task_id
        self.token = token
        self.interval = interval
        self.on_lost = on_lost
        self._buffer: list[str] = []
        self._sent = 0  # bytes of output appended to the task's partial by this attempt
        self._retrying = False  # the last flush found Redis away
        self._last_emit = 0.0
        self._timer: Any = None
        self._closed = False
        self._lock = Semaphore()  # keeps deltas in order when the timer and the run overlap

    def add(self, delta: str) -> None:
        self._buffer.append(delta)
        # While Redis does not answer, only the timer tries again: V1's stream keeps being
        # read instead of waiting out a socket timeout per delta.
        if self._timer is not None:
            return  # a flush is due already, and takes this delta too
        wait = self.interval
        if not self._retrying:
            wait = self._last_emit + self.interval - time.monotonic()
        if wait <= 0:
            # At the run's next pause (see the module's docstring).
            self._timer = gevent.spawn(self._timed_flush)
        else:
            # Once the interval since the last flush has passed, even if V1 pauses now.
            self._timer = gevent.spawn_later(wait, self._timed_flush)

    def _timed_flush(self) -> None:
        self._timer = None
        if self._closed:
            return
        try:
            self.flush()
        except LeaseLost as exc:
            self.on_lost(exc)

    def flush(self) -> None:
        # Never kill a timer mid-flush (its text would be lost): the lock orders the two.
        with self._lock:
            if not self._buffer:
                return
            text = "".join(self._buffer)
            self._buffer.clear()
            self._last_emit = time.monotonic()
            call = self.live.calls.progress(self.task_id, self.token, text, self._sent)
            try:
                answer = self.live.run(call)
            except (redis.ConnectionError, redis.TimeoutError):
                self._buffer.insert(0, text)  # again with the next flush
                self._retrying = True
                if self._timer is None and not self._closed:
                    self._timer = gevent.spawn_later(self.interval, self._timed_flush)
                return
            self._retrying = False
            if answer == -1:
                raise LeaseLost("another attempt owns this task")
            self._sent += len(text.encode())

    def take(self) -> tuple[str, int]:
        """At the run's end: the text not sent yet and the bytes sent before it, for the
        end's script to carry (`finish`'s `output`). No flush goes out after this."""
        self._closed = True
        with self._lock:  # a flush under way lands first
            text = "".join(self._buffer)
            self._buffer.clear()
            return text, self._sent

    def close(self) -> None:
        self._closed = True
