"""/v1/tasks/{id}/deliveries: a task's completion webhooks, every attempt, and resending.

A delivery is one webhook message (its `webhook-id` is `delivery_id`), made when the task
ended and retried until the receiver answers 2xx, WEBHOOK_MAX_ATTEMPTS or WEBHOOK_MAX_AGE.
Resending makes a new delivery (a new webhook-id) with the same body.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import anyio
import redis.exceptions
from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.api.tasks_read import load_task
from app.deps import Context, Tenant
from app.errors import ApiError
from app.openapi_errors import errors
from taskrecord import keys
from taskrecord.store.deliveries import PENDING, DeliveryStore, DeliveryView
from taskrecord.store.models import DeliveryAttemptRow, DeliveryRow
from taskrecord.store.repo import aware
from taskrecord.webhooks import EVENT_TYPES, new_delivery_id, shown_url

router = APIRouter(prefix="/v1/tasks", tags=["webhooks"])
REDIS_DOWN = "the task queue is unavailable; nothing was resent, try again shortly"


class AttemptOut(BaseModel):
    at: datetime
    status_code: int | None = Field(description="The receiver's status; null if none came.")
    error: str | None = Field(description="Why no status came (timeout, refused address...).")
    duration_ms: float


class DeliveryOut(BaseModel):
    delivery_id: str = Field(description="The `webhook-id` header of every attempt.")
    event_type: str = Field(description="task.succeeded, task.failed, task.cancelled, ...")
    url: str = Field(description="Where it goes (userinfo dropped, query elided).")
    trigger: str = Field(description="`ended` (the task ended) or `resend`.")
    state: str = Field(description="pending, delivered or failed (gave up).")
    created_at: datetime
    next_attempt_at: datetime | None
    finished_at: datetime | None
    attempts: list[AttemptOut]

    @classmethod
    def from_view(cls, view: DeliveryView) -> DeliveryOut:
        row = view.delivery
        return cls(
            delivery_id=row.id,
            event_type=row.event_type,
            url=shown_url(row.url),
            trigger=row.trigger,
            state=row.state,
            created_at=aware(row.created_at) or now_utc(),
            next_attempt_at=aware(row.next_attempt_at),
            finished_at=aware(row.finished_at),
            attempts=[_attempt(a) for a in view.attempts],
        )


def _attempt(row: DeliveryAttemptRow) -> AttemptOut:
    at = aware(row.at)
    assert at is not None
    return AttemptOut(
        at=at, status_code=row.status_code, error=row.error, duration_ms=row.duration_ms
    )


class DeliveryList(BaseModel):
    task_id: str
    deliveries: list[DeliveryOut] = Field(description="Oldest first.")


def now_utc() -> datetime:
    return datetime.now(UTC)


def _store(ctx: Context) -> DeliveryStore:
    return DeliveryStore(ctx.store.engine)


@router.get("/{task_id}/deliveries", response_model=DeliveryList, responses=errors(404))
async def list_deliveries(task_id: str, ctx: Context, tenant: Tenant) -> DeliveryList:
    await load_task(ctx, tenant, task_id)  # 404 unless it is this tenant's task
    views = await anyio.to_thread.run_sync(_store(ctx).for_task, task_id)
    return DeliveryList(task_id=task_id, deliveries=[DeliveryOut.from_view(v) for v in views])


@router.post(
    "/{task_id}/deliveries/resend",
    response_model=DeliveryOut,
    status_code=202,
    responses=errors(404, (409, "The task has not ended, or has no webhook delivery."), 503),
)
async def resend_delivery(task_id: str, ctx: Context, tenant: Tenant) -> DeliveryOut:
    """A new delivery (new webhook-id) of the task's latest webhook body, sent at once."""
    task = await load_task(ctx, tenant, task_id)
    if task.state not in EVENT_TYPES:
        raise ApiError(409, "conflict", f"the task has not ended (it is {task.state}); its "
                       "webhook is sent when it ends", state=task.state)  # fmt: skip
    store = _store(ctx)
    latest = await anyio.to_thread.run_sync(store.latest_for_task, task_id)
    if latest is None:
        raise ApiError(409, "conflict", "this task has no webhook delivery to resend: it "
                       "named no webhook_url (nor has its tenant a default), or its first "
                       "delivery is still being made", state=task.state)  # fmt: skip
    now = datetime.now(UTC)
    row = DeliveryRow(
        id=new_delivery_id(), task_id=task_id, tenant=tenant, url=latest.url,
        event_type=latest.event_type, body=latest.body, trigger="resend", state=PENDING,
        attempts=0, created_at=now, next_attempt_at=now,
    )  # fmt: skip
    await anyio.to_thread.run_sync(store.create, row)
    try:
        await ctx.redis.zadd(keys.WEBHOOKS_DUE, {f"d:{row.id}": time.time()})
    except redis.exceptions.RedisError as exc:
        await anyio.to_thread.run_sync(store.delete, row.id)  # not left pending forever
        raise ApiError(503, "unavailable", REDIS_DOWN, headers={"Retry-After": "5"}) from exc
    return DeliveryOut.from_view(DeliveryView(row, []))
