"""Idempotency-Key under concurrency and failure: a replay racing the first request gets
the task (never 404), and a submission that failed in Redis does not pin its key."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from tests.harness import API_KEY, System, new_system, tag
from v1sim.process import SimulatorProcess

ROUNDS = 40
CONCURRENT = 8


async def _burst(urls: list[str], key: str, body: dict[str, Any]) -> list[httpx.Response]:
    """CONCURRENT submissions with one key, spread over the gateway replicas."""
    headers = {"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": key}
    clients = [httpx.AsyncClient(base_url=u, headers=headers, timeout=30) for u in urls]
    try:
        return await asyncio.gather(
            *(clients[i % len(urls)].post("/v1/tasks", json=body) for i in range(CONCURRENT))
        )
    finally:
        for client in clients:
            await client.aclose()


@pytest.fixture
def two_gateways(system: System) -> Iterator[list[str]]:
    """Two replicas: a replay on one races the first request on the other (one process
    alone rarely interleaves them; two did in about 1 of 13 requests before the fix)."""
    second = System(system.redis_base, system.db, system.v1_url, system.workdir)
    try:
        second.start_gateway()
        yield [system.url, second.url]
    finally:
        second.stop()


def test_concurrent_replays_all_get_the_one_task(two_gateways: list[str]) -> None:
    for i in range(ROUNDS):
        key = f"race-{tag()}"
        replies = asyncio.run(_burst(two_gateways, key, {"message": f"raced {i}"}))
        statuses = [r.status_code for r in replies]
        assert statuses == [202] * CONCURRENT, [r.text for r in replies if r.status_code != 202]
        assert len({r.json()["task_id"] for r in replies}) == 1


def test_a_redis_error_at_create_does_not_pin_the_key(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    """Valkey refuses the create script (its ACL denies EVAL/EVALSHA) after the key was
    claimed: 503, and once Valkey works again the same key creates the task."""
    key = {"Idempotency-Key": f"failed-{tag()}"}
    body = {"message": "submitted while the create script fails"}
    with (
        EmbeddedValkey(tmp_path / "own-valkey") as own,
        new_system(own, simulator.url, tmp_path) as isolated,
    ):
        isolated.start_gateway()
        admin = redis.Redis.from_url(isolated.redis_url)
        admin.acl_setuser("default", enabled=True, commands=["-eval", "-evalsha"])
        try:
            with isolated.client() as api:
                refused = api.post("/v1/tasks", json=body, headers=key)
            left_after_failure = list(admin.scan_iter(match="v2:idem:*"))
        finally:
            admin.acl_setuser("default", enabled=True, commands=["+@all"])
        with isolated.client() as api:
            again = api.post("/v1/tasks", json=body, headers=key)
            replay = api.post("/v1/tasks", json=body, headers=key)
            found = api.get(f"/v1/tasks/{again.json().get('task_id')}")
        left = [k for k in admin.scan_iter(match="v2:idem:*")]
        admin.close()
    assert refused.status_code == 503 and refused.json()["error"]["type"] == "unavailable"
    assert left_after_failure == []  # released at once, not left to expire
    assert again.status_code == 202, again.text
    assert replay.status_code == 202 and replay.json()["task_id"] == again.json()["task_id"]
    assert found.status_code == 200
    assert len(left) == 1  # the key now names the task that exists
