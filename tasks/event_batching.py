"""Task events in batches under gevent, as Celery already sends them under prefork.

Celery buffers a worker's task events (`task-received`, `task-started`, `task-succeeded`,
...) and publishes them as one `task.multi` message per event-loop turn, but only when the
worker has an event loop (prefork); its own comment says gevent "should actually buffer".
Without it every task costs three broker publishes, a new Redis client object each (about
a sixth of a gevent worker's CPU per task). This consumer bootstep turns on the same
buffer for a gevent worker and flushes it `FLUSH_DELAY` after the first buffered event (or
at once when `buffer_limit` events are waiting, Celery's rule). Receivers (Flower, `celery
events`) take a list of events in one message since Celery 4.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, bootsteps
from celery.worker.consumer.events import Events

from tasks.gevent_mode import gevent_patched

log = logging.getLogger(__name__)

# How long the first buffered event waits for company: a monitor sees events this late at most.
FLUSH_DELAY = 0.02


class _DelayedFlush:
    """`on_send_buffered` of a dispatcher: one pending flush at a time, FLUSH_DELAY away."""

    def __init__(self, dispatcher: Any) -> None:
        self.dispatcher = dispatcher
        self.pending: Any = None

    def __call__(self) -> None:
        if self.pending is None:
            import gevent

            self.pending = gevent.spawn_later(FLUSH_DELAY, self.flush)

    def flush(self) -> None:
        self.pending = None
        try:
            self.dispatcher.flush()
        except Exception:  # a broker blip: the next flush sends what is still buffered
            log.warning("publishing buffered task events failed", exc_info=True)

    def flush_now(self) -> None:
        if self.pending is not None:
            self.pending.kill(block=False)
        self.flush()


class BatchedTaskEvents(bootsteps.StartStopStep):  # type: ignore[misc]
    """Runs after Celery's `Events` step (each time the consumer (re)starts)."""

    requires = (Events,)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        self.flusher: _DelayedFlush | None = None
        super().__init__(c, **kwargs)

    def start(self, c: Any) -> None:
        dispatcher = c.event_dispatcher
        if c.hub is not None or dispatcher is None or not gevent_patched():
            return  # prefork buffers already; a thread or solo pool publishes each event
        self.flusher = _DelayedFlush(dispatcher)
        dispatcher.buffer_group = frozenset({"task"})
        dispatcher.on_send_buffered = self.flusher

    def stop(self, c: Any) -> None:
        # Before `Events` closes the dispatcher (steps stop in reverse order): nothing buffered
        # is left behind by a restart or a shutdown.
        if self.flusher is not None:
            self.flusher.flush_now()
            self.flusher = None

    shutdown = stop


def install(app: Celery) -> None:
    app.steps["consumer"].add(BatchedTaskEvents)
