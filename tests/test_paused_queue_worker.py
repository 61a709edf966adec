"""A worker that starts while its queue is paused by an operator leaves that queue alone
until it is resumed (tasks/queue_control.py)."""

from __future__ import annotations

import socket

from taskrecord.settings import get_settings
from tasks.celery_app import create_celery_app
from tests.harness import System, tag
from tests.queue_pause import paused


def active_queues(system: System, node: str) -> list[str]:
    """The queues `node` consumes right now, as the worker itself reports them."""
    celery = create_celery_app(get_settings(redis_url=system.redis_url, v1_url=system.v1_url))
    try:
        replies = celery.control.inspect(destination=[node], timeout=10).active_queues() or {}
    finally:
        celery.close()
    return sorted(q["name"] for q in replies[node])


def test_a_worker_started_while_its_queue_is_paused_does_not_consume_it(
    system: System,
) -> None:
    name = f"late-{tag()}"
    node = f"{name}@{socket.gethostname()}"
    before = len(system.processes)
    try:
        with paused(system, "long") as witness:
            late = system.start_worker(queues="long,short", name=name)
            late.wait_for_log("queue long is paused by an operator: not consuming it", 15)
            consumed = active_queues(system, node)
            assert "short" in consumed and "long" not in consumed, consumed
            # Both workers are up and neither takes the queued task of the paused queue.
            with system.client() as api:
                held = api.get(f"/v1/tasks/{witness}").json()
            assert held["state"] == "queued" and held["attempts"] == 0, held
            # Leaving `paused` resumes the queue and waits for the witness to run.
        assert {"long", "short"} <= set(active_queues(system, node))
    finally:
        for extra in system.processes[before:]:  # the late worker: the shared system goes on
            extra.stop()
            system.processes.remove(extra)
