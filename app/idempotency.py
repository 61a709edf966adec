"""Idempotency-Key: the same key (with the same body) gives back the same task, also when
requests race each other or the first one fails.

The first request claims the key before it creates its task: the key names the task id,
marked `pending`, with a short TTL. Once the create script accepted the task the key is
confirmed (kept RESULT_TTL). A replay that finds a pending key waits for the first request's
outcome (the task's record appears, or the key goes) instead of answering 404 for a task
that does not exist yet. A first request that is refused or fails in Redis releases the
key; if even that fails, or its gateway dies, the pending key expires within PENDING_TTL.
So a failure never pins a key to a task that does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time

import redis.exceptions

from app.context import GatewayContext
from app.errors import ApiError
from taskrecord import keys
from taskrecord.live import text

PENDING_TTL = 10  # seconds a claimed key waits for its task to be created
REPLAY_WAIT = PENDING_TTL + 2.0  # a replay outwaits a pending key left by a dead gateway
POLL = 0.01
PENDING = "pending"


def name_for(tenant: str, key: str) -> str:
    return keys.idempotency_key(tenant, hashlib.sha256(key.encode()).hexdigest())


async def claim(
    ctx: GatewayContext, tenant: str, key: str, fingerprint: str, task_id: str
) -> str | None:
    """None: this request owns the key and creates `task_id`. Else the id of the task the
    key's first request created (409 if that request had another body)."""
    name = name_for(tenant, key)
    deadline = time.monotonic() + REPLAY_WAIT
    while True:
        if await ctx.redis.set(name, f"{task_id}|{fingerprint}|{PENDING}", nx=True,
                               ex=PENDING_TTL):  # fmt: skip
            return None
        raw = await ctx.redis.get(name)
        if raw is not None:  # else it just went (a refused first request): claim it again
            first_id, _, rest = text(raw).partition("|")
            first_print, _, state = rest.partition("|")
            if first_print != fingerprint:
                raise ApiError(409, "idempotency_conflict",
                               "this Idempotency-Key was used for a different request")  # fmt: skip
            if state != PENDING or await ctx.redis.exists(keys.task_key(first_id)):
                return first_id
        if time.monotonic() > deadline:
            raise ApiError(503, "unavailable", "the first request with this Idempotency-Key "
                           "is still being processed; retry shortly",
                           headers={"Retry-After": "1"})  # fmt: skip
        await asyncio.sleep(POLL)


async def confirm(
    ctx: GatewayContext, tenant: str, key: str | None, fingerprint: str, task_id: str
) -> None:
    """The task exists: keep the key for RESULT_TTL. Should this write fail, replays still
    find the task (a pending key whose record exists) until the key expires."""
    if key:
        with contextlib.suppress(redis.exceptions.RedisError):
            await ctx.redis.set(name_for(tenant, key), f"{task_id}|{fingerprint}",
                                ex=ctx.settings.result_ttl)  # fmt: skip


async def release(ctx: GatewayContext, tenant: str, key: str | None) -> None:
    """The task was not created: free the key (or let its short TTL do it)."""
    if key:
        with contextlib.suppress(redis.exceptions.RedisError):
            await ctx.redis.delete(name_for(tenant, key))
