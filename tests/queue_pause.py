"""Pausing and resuming a whole queue through /v1/admin, each checked by what workers do.

`pause_queue` does not trust the endpoint's `paused: true` (it always says so): it sends a
witness task to the paused queue and then a task to another queue. Once the second one has
run to the end, the witness must still be queued, never attempted. `resume_queue` waits
for that witness to run: a queue is resumed when its tasks run again, not when the
endpoint answers 200.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.harness import ADMIN_KEY, System, submit, wait_terminal

# Submission fields that route a task to each queue (tenant alpha may use priority 9).
ROUTE: dict[str, dict[str, Any]] = {
    "priority": {"priority": 9},
    "short": {},
    "long": {"estimated_seconds": 900},
}
_OTHER = {"priority": "short", "short": "long", "long": "short"}
_witnesses: dict[tuple[int, str], str] = {}


def admin(system: System, method: str, path: str) -> httpx.Response:
    return httpx.request(method, f"{system.url}/v1/admin{path}",
                         headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)  # fmt: skip


def pause_queue(system: System, queue: str) -> str:
    """Pause `queue` and show it paused; returns the witness task left queued in it."""
    reply = admin(system, "POST", f"/queues/{queue}/pause")
    assert reply.status_code == 200, reply.text
    assert reply.json()["workers"] >= 1, "no worker acknowledged the pause"
    with system.client() as api:
        witness = submit(api, f"witness of a paused {queue} queue", **ROUTE[queue])["task_id"]
        other = submit(api, f"runs while {queue} is paused", **ROUTE[_OTHER[queue]])["task_id"]
        assert wait_terminal(api, other)["state"] == "succeeded"
        held = api.get(f"/v1/tasks/{witness}").json()
    assert held["state"] == "queued" and held["attempts"] == 0, held
    listing = admin(system, "GET", "/queues").json()["queues"][queue]
    assert listing["paused"] is True and listing["depth"] >= 1, listing
    _witnesses[(system.db, queue)] = witness
    return witness


def resume_queue(system: System, queue: str) -> None:
    """Resume `queue` (unless the test already did) and wait until the witness left by
    `pause_queue` has run."""
    if admin(system, "GET", "/queues").json()["queues"][queue]["paused"]:
        reply = admin(system, "POST", f"/queues/{queue}/resume")
        assert reply.status_code == 200, reply.text
        assert admin(system, "GET", "/queues").json()["queues"][queue]["paused"] is False
    witness = _witnesses.pop((system.db, queue), None)
    if witness is not None:
        with system.client() as api:
            done = wait_terminal(api, witness, timeout=30)
        assert done["state"] == "succeeded", f"{queue} did not resume: {done}"


@contextmanager
def paused(system: System, queue: str) -> Iterator[str]:
    """The queue paused for the block (resumed after it, also if showing the pause failed:
    the shared system must not stay paused for the tests after)."""
    try:
        yield pause_queue(system, queue)
    finally:
        resume_queue(system, queue)
