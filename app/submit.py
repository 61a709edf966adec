"""Accepting a task: validate -> estimate -> route -> record -> dispatch.

Runs on the event loop with nothing slower than a few Redis round trips: the record is the
live hash in Redis (one Lua script), the SQL row is written behind, and Celery's blocking
publish runs on a worker thread.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from functools import partial

import anyio
import redis.exceptions
from kombu.exceptions import OperationalError
from sqlalchemy.exc import SQLAlchemyError

from app import keys
from app.context import GatewayContext
from app.errors import ApiError
from app.estimator import estimate
from app.live import dumps, finalize_result, text
from app.mirror import mirror_live
from app.routing import choose_queue, choose_tier
from app.schemas import TaskCreate
from tasks.dispatch import dispatch

log = logging.getLogger(__name__)

BROKER_DOWN = "the task queue is unavailable; nothing was accepted, try again shortly"


def fingerprint(body: TaskCreate) -> str:
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()[:32]


async def submit(
    ctx: GatewayContext, tenant: str, body: TaskCreate, idempotency_key: str | None
) -> tuple[str, dict[str, str] | None]:
    """Returns (task_id, the live fields as accepted), or (first task's id, None) for an
    idempotent replay."""
    settings = ctx.settings
    if body.text_chars() > settings.max_message_chars:
        raise ApiError(
            413,
            "message_too_large",
            f"the message has {body.text_chars()} characters; the limit is "
            f"{settings.max_message_chars}",
        )
    agent_id = body.agent_id or settings.v1_default_agent
    if settings.v1_agents and agent_id not in settings.v1_agents:
        raise ApiError(
            422,
            "unknown_agent",
            f"unknown agent {agent_id!r}; known: {', '.join(settings.v1_agents)}",
        )
    task_id = str(uuid.uuid4())
    try:
        if idempotency_key is not None:
            existing = await _claim_idempotency(ctx, tenant, idempotency_key, body, task_id)
            if existing is not None:
                return existing, None
        guess = await estimate(ctx.redis, agent_id, body.text_chars(), body.estimated_seconds)
        queue = choose_queue(body.priority, guess.seconds, settings)
        try:
            await _refuse_when_full(ctx, queue)
        except ApiError:
            ctx.metrics.refused.labels("queue_full").inc()
            raise
        now = time.time()
        fields: dict[str, str | int | float] = {
            "id": task_id,
            "tenant": tenant,
            "state": "queued",
            "queue": queue,
            "tier": choose_tier(guess.seconds, settings),
            "priority": body.priority,
            "estimated_seconds": guess.seconds,
            "estimate_source": guess.source,
            "agent_id": agent_id,
            "session_id": body.session_id or "",
            "created_at": f"{now:.6f}",
            "attempts": 0,
            "dispatch": 1,
            "timeout_seconds": body.timeout_seconds or "",
            "request": dumps({"messages": body.chat()}),
            "metadata": dumps(body.metadata) if body.metadata else "",
        }
        deadline = now + settings.absolute_time_limit
        queued = {"queue": queue, "priority": body.priority}
        await ctx.live.run(ctx.live.calls.create(task_id, fields, queued, deadline))
    except redis.exceptions.RedisError as exc:
        log.warning("redis unavailable on submit: %s", type(exc).__name__)
        raise ApiError(503, "unavailable", BROKER_DOWN, headers={"Retry-After": "5"}) from exc
    try:
        # The SQL row is written behind (maintenance copies new tasks in batches; the
        # worker upserts it when it starts the task): Redis (AOF) holds it until then.
        await anyio.to_thread.run_sync(partial(dispatch, ctx.celery, task_id, queue, 1))
        await ctx.redis.zrem(keys.DISPATCH_DUE, task_id)
    except (OperationalError, redis.exceptions.RedisError, SQLAlchemyError, OSError) as exc:
        await _withdraw(ctx, task_id, tenant, idempotency_key)
        log.warning("task %s not accepted: %s", task_id, type(exc).__name__)
        raise ApiError(503, "unavailable", BROKER_DOWN, headers={"Retry-After": "5"}) from exc
    ctx.metrics.submitted.labels(queue).inc()
    return task_id, {name: str(value) for name, value in fields.items()}


async def _claim_idempotency(
    ctx: GatewayContext, tenant: str, key: str, body: TaskCreate, task_id: str
) -> str | None:
    if not key or len(key) > 200:
        raise ApiError(422, "invalid_request", "Idempotency-Key must be 1-200 characters")
    name = keys.idempotency_key(tenant, hashlib.sha256(key.encode()).hexdigest())
    value = f"{task_id}|{fingerprint(body)}"
    if await ctx.redis.set(name, value, nx=True, ex=ctx.settings.result_ttl):
        return None
    stored = await ctx.redis.get(name)
    first_id, _, first_print = text(stored or b"").partition("|")
    if first_print != fingerprint(body):
        raise ApiError(
            409, "idempotency_conflict", "this Idempotency-Key was used for a different request"
        )
    return first_id


async def _refuse_when_full(ctx: GatewayContext, queue: str) -> None:
    depth = int(await ctx.redis.llen(queue))
    if depth >= ctx.settings.queue_limit:
        raise ApiError(
            429,
            "queue_full",
            f"the {queue} queue holds {depth} tasks (limit {ctx.settings.queue_limit}); "
            "retry later",
            headers={"Retry-After": "10"},
        )


async def _withdraw(
    ctx: GatewayContext, task_id: str, tenant: str, idempotency_key: str | None
) -> None:
    """A task we could not hand to the queue is ended at once, so nothing waits for it."""
    error = {"type": "not_accepted", "message": BROKER_DOWN}
    try:
        raw = await ctx.live.run(ctx.live.calls.finalize(task_id, "failed", error=error))
        if finalize_result(raw).ended:
            fields = await ctx.live.get(task_id)
            await anyio.to_thread.run_sync(
                mirror_live, ctx.store, task_id, fields, "", "not accepted"
            )
        if idempotency_key is not None:
            digest = hashlib.sha256(idempotency_key.encode()).hexdigest()
            await ctx.redis.delete(keys.idempotency_key(tenant, digest))
    except Exception:  # best effort: the caller already answers 503
        log.exception("could not withdraw task %s", task_id)
