"""Real processes for the tests: gateway, Celery workers, maintenance, on real ports.

Each `System` uses its own Redis database number and SQLite file, so systems started with
different settings (short time limits, small budgets) never see each other's tasks.

The processes themselves (`System`, `ManagedProcess`, `wait_until`, keys and tokens) live in
the `testbed` package, which the benchmarks share; this module re-exports them and adds the
tests' client helpers and `new_system`.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from testbed import (
    ADMIN_KEY,
    API_KEY,
    OTHER_API_KEY,
    ROOT,
    V1_TOKEN,
    ManagedProcess,
    System,
    wait_until,
)

__all__ = [
    "ADMIN_KEY",
    "API_KEY",
    "OTHER_API_KEY",
    "ROOT",
    "V1_TOKEN",
    "ManagedProcess",
    "System",
    "new_system",
    "running_system",
    "submit",
    "tag",
    "wait_for_state",
    "wait_listed",
    "wait_terminal",
    "wait_until",
]


def submit(client: httpx.Client, message: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/tasks", json={"message": message, **fields})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for_state(
    client: httpx.Client, task_id: str, states: tuple[str, ...] | str, timeout: float = 30
) -> dict[str, Any]:
    wanted = (states,) if isinstance(states, str) else states
    last: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        last.update(client.get(f"/v1/tasks/{task_id}").json())
        return last if last.get("state") in wanted else None

    try:
        result: dict[str, Any] = wait_until(check, timeout, 0.1, f"task {task_id} in {wanted}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {last}") from None
    return result


def wait_terminal(client: httpx.Client, task_id: str, timeout: float = 30) -> dict[str, Any]:
    return wait_for_state(
        client, task_id, ("succeeded", "failed", "cancelled", "timed_out"), timeout
    )


def wait_listed(
    client: httpx.Client, task_ids: list[str], timeout: float = 10, **params: str
) -> list[dict[str, Any]]:
    """`GET /v1/tasks` with `params` once it lists every one of `task_ids`: lists read the
    SQL copy, which follows the live record (workers write it in batches, not waiting)."""
    wanted = set(task_ids)

    def listing() -> list[dict[str, Any]] | None:
        reply = client.get("/v1/tasks", params={"limit": "200", **params})
        assert reply.status_code == 200, reply.text
        tasks: list[dict[str, Any]] = reply.json()["tasks"]
        return tasks if wanted <= {t["task_id"] for t in tasks} else None

    found: list[dict[str, Any]] = wait_until(listing, timeout, 0.05, f"{sorted(wanted)} listed")
    return found


def tag() -> str:
    return uuid.uuid4().hex[:12]


@contextlib.contextmanager
def running_system(system: System) -> Iterator[System]:
    try:
        yield system
    finally:
        system.stop()


# One counter for the whole session (this module is imported once, unlike conftest).
_db_numbers = itertools.count(1)


@contextlib.contextmanager
def without_workers(valkey: Any, v1_url: str, workdir: Path, **overrides: str) -> Iterator[System]:
    """A gateway and maintenance, no worker: the test plays the workers' part in Redis."""
    system = new_system(valkey, v1_url, workdir, **overrides)
    try:
        system.start_gateway()
        system.start_maintenance()
        yield system
    finally:
        system.stop()


def new_system(valkey: Any, v1_url: str, workdir: Path, **overrides: str) -> System:
    """A system on its own Redis database of `valkey`, with its own SQLite file."""
    return System(
        redis_base=valkey.url.rsplit("/", 1)[0],
        db=next(_db_numbers),
        v1_url=v1_url,
        workdir=workdir,
        overrides=overrides,
    )
