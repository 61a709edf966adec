"""Accepting a task: validate -> estimate -> route -> record + enqueue -> 202.

One Redis script records the live task and pushes its Celery message together (rendered
here by `taskrecord.message`), after checking the queue limit: a task is accepted whole or
not at all, with a single round trip and no blocking call on the event loop. The SQL row
is written behind (maintenance copies new tasks in batches; the worker upserts it when it
starts).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
import uuid
from dataclasses import replace

import redis.exceptions

from app import idempotency
from app.context import GatewayContext
from app.errors import ApiError
from app.schemas import TaskCreate
from app.submit_policy import busy_refusal, cancel_displaced, due_at
from app.token_budget import check_token_budget
from app.webhooks import webhook_url_for
from taskrecord.live import TenantQuota, create_result
from taskrecord.message import run_message
from taskrecord.new_task import TaskSpec, refusal, task_fields
from taskrecord.tenants import TenantPolicy

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
    policy = ctx.tenants(tenant)
    # The record every new task gets (schedules' firings build and check it the same way).
    spec = TaskSpec(body.chat(), body.agent_id or settings.v1_default_agent,
                    body.session_id or "", body.priority, body.estimated_seconds,
                    body.timeout_seconds, body.metadata, webhook_url="")  # fmt: skip
    refused = refusal(settings, policy, spec, single_message=body.messages is None)
    if refused is not None:
        raise ApiError(refused.status, refused.type, refused.message, **refused.extra)
    spec = replace(spec, webhook_url=await webhook_url_for(settings, tenant, body.webhook_url))
    due = due_at(body, settings, time.time())  # 0.0: not scheduled
    await check_token_budget(ctx, policy)  # 429 token_budget_exhausted (off by default)
    task_id = str(uuid.uuid4())
    try:
        if idempotency_key is not None:
            existing = await _claim_idempotency(ctx, tenant, idempotency_key, body, task_id)
            if existing is not None:
                return existing, None
        guess = await ctx.estimates.estimate(
            spec.agent_id, spec.text_chars(), body.estimated_seconds
        )
        now = time.time()
        fields = task_fields(settings, policy, spec, task_id, guess, now)
        queue = fields["queue"]
        queued: dict[str, object] = {"queue": queue, "priority": body.priority}
        if due:
            fields["scheduled_for"] = f"{due:.6f}"
            queued["scheduled_for"] = round(due, 6)
        call = ctx.live.calls.create(
            task_id, fields, queued,
            # A scheduled task's absolute limit counts from when it is due.
            (due or now) + settings.absolute_time_limit, queue, settings.queue_limit,
            run_message(task_id, 1, queue),
            TenantQuota(tenant, policy.max_queued, policy.rate_per_second, policy.burst),
            if_busy=body.if_busy or "", due_at=due,
        )  # fmt: skip
        created = create_result(await ctx.live.run(call))
        outcome = created.outcome
    except redis.exceptions.RedisError as exc:
        log.warning("redis unavailable on submit: %s", type(exc).__name__)
        await idempotency.release(ctx, tenant, idempotency_key)
        ctx.metrics.refused.labels("unavailable").inc()
        raise ApiError(503, "unavailable", REDIS_DOWN, headers={"Retry-After": "5"}) from exc
    if outcome.startswith(("tenant_full:", "rate:")):
        await _forget_idempotency(ctx, tenant, idempotency_key)
        raise _tenant_refusal(outcome, policy)
    if outcome.startswith("full:"):
        await _forget_idempotency(ctx, tenant, idempotency_key)
        ctx.metrics.refused.labels("queue_full").inc()
        raise ApiError(429, "queue_full", f"the {queue} queue holds {outcome[5:]} tasks (limit "
                       f"{settings.queue_limit}); retry later",
                       headers={"Retry-After": "10"})  # fmt: skip
    if outcome.startswith("busy:"):
        await _forget_idempotency(ctx, tenant, idempotency_key)
        ctx.metrics.refused.labels("conversation_busy").inc()
        raise busy_refusal(outcome[5:])
    await cancel_displaced(ctx, task_id, body.if_busy, created.to_cancel)
    if idempotency_key is not None:
        await idempotency.confirm(ctx, tenant, idempotency_key, fingerprint(body), task_id)
    ctx.metrics.submitted.labels(queue).inc()
    return task_id, fields


def _tenant_refusal(outcome: str, policy: TenantPolicy) -> ApiError:
    """429 naming which of the tenant's limits the submit hit."""
    kind, _, detail = outcome.partition(":")
    if kind == "rate":
        wait = max(1, math.ceil(float(detail)))
        return ApiError(429, "rate_limited", f"this tenant may submit {policy.rate_per_second:g} "
                        f"tasks per second (bursts of {policy.burst}); retry in {wait} s",
                        headers={"Retry-After": str(wait)})  # fmt: skip
    return ApiError(429, "tenant_queue_full", f"this tenant has {detail} unfinished tasks, its "
                    f"limit (TENANT_MAX_QUEUED) is {policy.max_queued}; retry when some "
                    "have finished", headers={"Retry-After": "10"})  # fmt: skip


def check_idempotency_key(key: str) -> None:
    """1-200 printable ASCII characters (a structured-field string, as the header's draft
    standard has it): nothing that cannot be stored, logged or compared as it was sent."""
    if not IDEMPOTENCY_KEY.fullmatch(key):
        raise ApiError(422, "invalid_request", "Idempotency-Key: must be 1-200 printable "
                       "ASCII characters")  # fmt: skip


async def _claim_idempotency(
    ctx: GatewayContext, tenant: str, key: str, body: TaskCreate, task_id: str
) -> str | None:
    return await idempotency.claim(ctx, tenant, key, fingerprint(body), task_id)


async def _forget_idempotency(ctx: GatewayContext, tenant: str, key: str | None) -> None:
    """A refused submission must not pin its key to a task that does not exist."""
    await idempotency.release(ctx, tenant, key)
