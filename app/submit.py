"""Accepting a task: validate -> estimate -> route -> record + enqueue -> 202.

One Redis script records the live task and pushes its Celery message together (see
`taskrecord.message`), after checking the queue limit: a task is accepted whole or not at all,
with a single round trip and no blocking call on the event loop. The SQL row is written
behind (maintenance copies new tasks in batches; the worker upserts it when it starts).
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid

import redis.exceptions

from app.context import GatewayContext
from app.errors import ApiError
from app.schemas import TaskCreate
from taskrecord import keys
from taskrecord.live import dumps, text
from taskrecord.message import run_message
from taskrecord.routing import choose_queue, choose_tier
from taskrecord.settings import Settings

log = logging.getLogger(__name__)

IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,200}")
REDIS_DOWN = "the task queue is unavailable; nothing was accepted, try again shortly"


def fingerprint(body: TaskCreate) -> str:
    return hashlib.sha256(body.model_dump_json().encode()).hexdigest()[:32]


async def submit(
    ctx: GatewayContext, tenant: str, body: TaskCreate, idempotency_key: str | None
) -> tuple[str, dict[str, str] | None]:
    """Returns (task_id, the live fields as accepted), or (first task's id, None) for an
    idempotent replay."""
    settings = ctx.settings
    if idempotency_key is not None:
        check_idempotency_key(idempotency_key)
    chars = body.text_chars()
    if chars > settings.max_message_chars:
        what = "the message has" if body.messages is None else "the messages have together"
        raise ApiError(413, "message_too_large", f"{what} {chars} characters; the limit is "
                       f"{settings.max_message_chars} (MAX_MESSAGE_CHARS)")  # fmt: skip
    ceiling = max_priority(settings, tenant)
    if body.priority > ceiling:
        raise ApiError(422, "priority_not_allowed", f"priority: {body.priority} is above this "
                       f"tenant's maximum of {ceiling} (TENANT_MAX_PRIORITY; tenants listed "
                       "in PRIORITY_TENANTS may use up to 10)", max_priority=ceiling)  # fmt: skip
    agent_id = body.agent_id or settings.v1_default_agent
    if settings.v1_agents and agent_id not in settings.v1_agents:
        raise ApiError(422, "unknown_agent", f"unknown agent {agent_id!r}; known: "
                       f"{', '.join(settings.v1_agents)}")  # fmt: skip
    task_id = str(uuid.uuid4())
    try:
        if idempotency_key is not None:
            existing = await _claim_idempotency(ctx, tenant, idempotency_key, body, task_id)
            if existing is not None:
                return existing, None
        guess = await ctx.estimates.estimate(agent_id, chars, body.estimated_seconds)
        queue = choose_queue(body.priority, guess.seconds, settings)
        now = time.time()
        fields: dict[str, str] = {
            "id": task_id,
            "tenant": tenant,
            "state": "queued",
            "queue": queue,
            "tier": choose_tier(guess.seconds, settings),
            "priority": str(body.priority),
            "estimated_seconds": str(guess.seconds),
            "estimate_source": guess.source,
            "agent_id": agent_id,
            "session_id": body.session_id or "",
            "created_at": f"{now:.6f}",
            "attempts": "0",
            "dispatch": "1",
            "timeout_seconds": str(body.timeout_seconds or ""),
            "request": dumps({"messages": body.chat()}),
            "metadata": dumps(body.metadata) if body.metadata else "",
        }
        call = ctx.live.calls.create(
            task_id, fields, {"queue": queue, "priority": body.priority},
            now + settings.absolute_time_limit, queue, settings.queue_limit,
            run_message(task_id, 1, queue),
        )  # fmt: skip
        outcome = text(await ctx.live.run(call))
    except redis.exceptions.RedisError as exc:
        log.warning("redis unavailable on submit: %s", type(exc).__name__)
        ctx.metrics.refused.labels("unavailable").inc()
        raise ApiError(503, "unavailable", REDIS_DOWN, headers={"Retry-After": "5"}) from exc
    if outcome.startswith("full:"):
        await _forget_idempotency(ctx, tenant, idempotency_key)
        ctx.metrics.refused.labels("queue_full").inc()
        raise ApiError(429, "queue_full", f"the {queue} queue holds {outcome[5:]} tasks (limit "
                       f"{settings.queue_limit}); retry later",
                       headers={"Retry-After": "10"})  # fmt: skip
    ctx.metrics.submitted.labels(queue).inc()
    return task_id, fields


def max_priority(settings: Settings, tenant: str) -> int:
    """The highest priority `tenant` may ask for: 10 for PRIORITY_TENANTS, else
    TENANT_MAX_PRIORITY (unset: PRIORITY_THRESHOLD, the top of the non-priority queues)."""
    if tenant in settings.priority_tenants:
        return 10
    if settings.tenant_max_priority is not None:
        return settings.tenant_max_priority
    return settings.priority_threshold


def check_idempotency_key(key: str) -> None:
    """1-200 printable ASCII characters (a structured-field string, as the header's draft
    standard has it): nothing that cannot be stored, logged or compared as it was sent."""
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(422, "invalid_request", "Idempotency-Key: must be 1-200 printable "
                       "ASCII characters")  # fmt: skip


def _idempotency_name(tenant: str, key: str) -> str:
    return keys.idempotency_key(tenant, hashlib.sha256(key.encode()).hexdigest())


async def _claim_idempotency(
    ctx: GatewayContext, tenant: str, key: str, body: TaskCreate, task_id: str
) -> str | None:
    name = _idempotency_name(tenant, key)
    if await ctx.redis.set(name, f"{task_id}|{fingerprint(body)}", nx=True,
                           ex=ctx.settings.result_ttl):  # fmt: skip
        return None
    first_id, _, first_print = text(await ctx.redis.get(name) or b"").partition("|")
    if first_print != fingerprint(body):
        raise ApiError(409, "idempotency_conflict",
                       "this Idempotency-Key was used for a different request")  # fmt: skip
    return first_id


async def _forget_idempotency(ctx: GatewayContext, tenant: str, key: str | None) -> None:
    """A refused submission must not pin its key to a task that does not exist."""
    if key:
        await ctx.redis.delete(_idempotency_name(tenant, key))
