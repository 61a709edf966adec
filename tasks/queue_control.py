"""Pausing and resuming whole queues, for operators.

Celery's own `cancel_consumer` / `add_consumer` would make *every* worker consume a
resumed queue (a short-queue worker would start taking long tasks). These two remote
control commands do the same per worker but only for the queues the worker was started
with; and a worker that starts while a queue is paused leaves it alone until resumed.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_ready
from celery.worker.control import control_command, ok

from taskrecord import keys
from taskrecord.live import text
from taskrecord.redis_client import redis_client
from taskrecord.settings import get_settings

log = logging.getLogger(__name__)

HOME_QUEUES: set[str] = set()  # the queues this worker process was started with
CONSUMER: Any = None  # this worker's consumer (set when the worker is ready)


def _set_consuming(state: Any, queue: str, consume: bool) -> dict[str, str]:
    if queue not in HOME_QUEUES:
        return ok(f"not consuming {queue}")  # type: ignore[no-any-return]
    consumer = state.consumer
    consumer.call_soon(consumer.add_task_queue if consume else consumer.cancel_task_queue, queue)
    return ok(f"{'resumed' if consume else 'paused'} {queue}")  # type: ignore[no-any-return]


@control_command(args=[("queue", str)], signature="<queue>")  # type: ignore[untyped-decorator]
def v2_pause_queue(state: Any, queue: str, **_: Any) -> dict[str, str]:
    return _set_consuming(state, queue, consume=False)


@control_command(args=[("queue", str)], signature="<queue>")  # type: ignore[untyped-decorator]
def v2_resume_queue(state: Any, queue: str, **_: Any) -> dict[str, str]:
    return _set_consuming(state, queue, consume=True)


@worker_ready.connect  # type: ignore[untyped-decorator]
def _apply_paused_queues(sender: Any = None, **_: Any) -> None:
    global CONSUMER
    consumer = CONSUMER = sender
    HOME_QUEUES.update(q.name for q in consumer.task_consumer.queues)
    client = redis_client(get_settings())
    try:
        paused = {text(name) for name in client.hkeys(keys.PAUSED_QUEUES)}
    finally:
        client.close()
    for queue in sorted(paused & HOME_QUEUES):
        log.info("queue %s is paused by an operator: not consuming it", queue)
        consumer.cancel_task_queue(queue)
