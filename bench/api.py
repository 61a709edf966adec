"""Talking to a V2 system as a client does: the HTTP API (`api_client`, submitting, reading
tasks) and cheap polling of the tasks' live records in Redis."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
import redis

from bench.processes import pause
from taskrecord import keys
from testbed import API_KEY

TERMINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out"})
AUTH = {"Authorization": f"Bearer {API_KEY}"}


# --------------------------------------------------------------------------- HTTP helpers


def api_client(
    base_url: str, connections: int = 100, timeout: float = 60.0, api_key: str = API_KEY
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {api_key}"},
        timeout=timeout,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        trust_env=False,
    )


async def submit_one(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/tasks; returns the response plus `t_send` / `t_done` (unix seconds)."""
    t_send = time.time()
    response = await client.post("/v1/tasks", json=body)
    t_done = time.time()
    if response.status_code != 202:
        raise RuntimeError(f"submit answered {response.status_code}: {response.text[:300]}")
    data: dict[str, Any] = response.json()
    data.update(t_send=t_send, t_done=t_done)
    return data


async def submit_many(
    client: httpx.AsyncClient, bodies: Sequence[dict[str, Any]], concurrency: int = 32
) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(concurrency)

    async def one(body: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            return await submit_one(client, body)

    return list(await asyncio.gather(*(one(b) for b in bodies)))


async def fetch_tasks(
    client: httpx.AsyncClient, ids: Sequence[str], concurrency: int = 16
) -> dict[str, dict[str, Any]]:
    """GET /v1/tasks/{id} for every id (what a user sees)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(task_id: str) -> tuple[str, dict[str, Any]]:
        async with gate:
            response = await client.get(f"/v1/tasks/{task_id}")
            return task_id, (response.json() if response.status_code == 200 else {})

    return dict(await asyncio.gather(*(one(i) for i in ids)))


def live_states(redis_url: str, ids: Sequence[str], field: str = "state") -> dict[str, str]:
    """A field of each task's live record, read straight from Redis (cheap polling that
    adds no load to the gateway; the final figures come from GET /v1/tasks/{id})."""
    # A Valkey serving 10,000 running tasks can take seconds to answer a batch.
    client = redis.Redis.from_url(redis_url, socket_timeout=60)
    out: dict[str, str] = {}
    try:
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            pipe = client.pipeline(transaction=False)
            for task_id in chunk:
                pipe.hget(keys.task_key(task_id), field)
            for task_id, value in zip(chunk, pipe.execute(), strict=True):
                out[task_id] = value.decode() if isinstance(value, bytes) else (value or "")
    finally:
        client.close()
    return out


def wait_all_terminal(
    redis_url: str, ids: Sequence[str], timeout: float, interval: float = 0.5
) -> tuple[bool, dict[str, str]]:
    """Poll the live records until every task is terminal or `timeout` passes."""
    deadline = time.monotonic() + timeout
    pending = list(ids)
    states: dict[str, str] = {}
    while True:
        try:
            states.update(live_states(redis_url, pending))
        except (redis.TimeoutError, redis.ConnectionError) as exc:  # busy, not gone: poll on
            print(f"[bench] polling Valkey: {type(exc).__name__}; trying again", file=sys.stderr)
        pending = [i for i in pending if states.get(i) not in TERMINAL]
        if not pending or time.monotonic() > deadline:
            return not pending, states
        pause(interval)


def iso_to_unix(value: str | None) -> float | None:
    if not value:
        return None
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def new_tag(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
