"""/v1/schedules: a tenant's recurring schedules (create, list, read, delete).

The schedule is written to the SQL store, then indexed in Redis by its due time; maintenance
fires it (`tasks/schedule_sweep.py`). Its task is checked now as `POST /v1/tasks` would
check it, and again at each firing, which goes through the same CREATE script.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime

import anyio
import redis.exceptions
from fastapi import APIRouter, Response
from pydantic import ValidationError

from app.deps import Context, Tenant
from app.errors import ApiError, safe_text
from app.openapi_errors import errors
from app.schedule_schemas import (
    OTHER_FIELDS,
    SCHEDULE_EXAMPLE,
    ScheduleCreate,
    ScheduleList,
    ScheduleOut,
    ScheduleSummary,
)
from app.schemas import TaskCreate
from app.webhooks import webhook_url_for
from taskrecord import keys
from taskrecord.new_task import TaskSpec, refusal
from taskrecord.schedules import (
    RESERVED_METADATA,
    SCHEDULE_ID_KEY,
    SCHEDULED_FOR_KEY,
    Cron,
    ScheduleError,
    check_interval,
    iso,
    parse_cron,
)
from taskrecord.store.models import ScheduleRow
from taskrecord.store.schedules import ScheduleStore

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/schedules", tags=["schedules"])
MAX_LISTED = 1000

_NOT_FOUND = (404, "No such schedule for this API key.",
              {"not_found": "no schedule '5d1e...' (for this API key)"})  # fmt: skip
_CREATE_ERRORS = errors(
    400,
    (409, "The tenant has TENANT_MAX_SCHEDULES schedules; delete one first.",
     {"schedule_limit_reached": "this tenant has 100 schedules, its limit"}),
    (413, "The task's text is over MAX_MESSAGE_CHARS.",
     {"message_too_large": "the messages have together 120000 characters; the limit is 100000"}),
    (422, "The cron expression, the time zone or a field of the task is invalid, the "
     "schedule fires more often than SCHEDULE_MIN_INTERVAL, or the task would be refused.",
     {"invalid_cron": "cron: has 4 fields; give 5 (minute hour day month weekday) or 6",
      "unknown_timezone": "timezone: 'Mars/Base' is not an IANA time zone",
      "schedule_too_frequent": "cron: fires 1 s apart; the minimum is 60 s",
      "invalid_request": "task.message: Value error, message is empty"}),
)  # fmt: skip


def _store(ctx: Context) -> ScheduleStore:
    return ScheduleStore(ctx.store.engine)


def _known_id(schedule_id: str) -> str:
    """Ids are UUIDs: anything else is no schedule (and never reaches the store)."""
    try:
        uuid.UUID(schedule_id)
    except ValueError:
        raise _not_found(schedule_id) from None
    return schedule_id


def _not_found(schedule_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no schedule {safe_text(schedule_id, 40)!r} (for this "
                    "API key)")  # fmt: skip


@router.post(
    "",
    status_code=201,
    response_model=ScheduleOut,
    responses=_CREATE_ERRORS,
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"examples": {"weekdays": {"value": SCHEDULE_EXAMPLE}}}}
        }
    },
)
async def create_schedule(
    body: ScheduleCreate, ctx: Context, tenant: Tenant, response: Response
) -> ScheduleOut:
    settings, now = ctx.settings, time.time()

    def when() -> tuple[Cron, float | None]:
        cron = parse_cron(body.cron, body.timezone)
        check_interval(cron, settings.schedule_min_interval, now)
        return cron, cron.next_after(now)

    try:
        cron, first = await anyio.to_thread.run_sync(when)
    except ScheduleError as exc:
        raise ApiError(422, exc.kind, safe_text(exc.message, 300), field=exc.field) from None
    assert first is not None  # parse_cron refuses an expression that never fires
    schedule_id = str(uuid.uuid4())
    task = _checked_task(body.task, schedule_id)
    refused = refusal(settings, ctx.tenants(tenant), TaskSpec.from_body(settings, tenant, task))
    if refused is not None:
        raise ApiError(refused.status, refused.type, refused.message)
    try:
        await webhook_url_for(settings, tenant, body.task.webhook_url)
    except ApiError as exc:
        raise ApiError(
            exc.status, exc.type, f"task.{exc.message}", field="task.webhook_url"
        ) from None
    row = ScheduleRow(id=schedule_id, tenant=tenant, name=body.name, cron=cron.expression,
                      timezone=body.timezone, task=task,
                      created_at=datetime.fromtimestamp(now, UTC),
                      next_run_at=datetime.fromtimestamp(first, UTC), runs=0)  # fmt: skip
    limit = settings.tenant_max_schedules
    if not await anyio.to_thread.run_sync(_store(ctx).create, row, limit):
        raise ApiError(409, "schedule_limit_reached", f"this tenant has {limit} schedules, its "
                       "limit (TENANT_MAX_SCHEDULES); delete one first")  # fmt: skip
    try:
        await ctx.redis.zadd(keys.SCHEDULES_DUE, {schedule_id: first})
    except redis.exceptions.RedisError as exc:  # stored: maintenance indexes it within a minute
        log.warning("schedule %s not indexed yet: %s", schedule_id, type(exc).__name__)
    response.headers["Location"] = f"/v1/schedules/{schedule_id}"
    return ScheduleOut.from_row(row)


def _checked_task(task: TaskCreate, schedule_id: str) -> dict[str, object]:
    """The task as JSON to store, once it is known that every firing's copy (with the
    schedule's metadata keys added) is a valid task."""
    unsupported = [name for name in OTHER_FIELDS if getattr(task, name) is not None]
    if unsupported:
        raise ApiError(422, "invalid_request", f"task.{unsupported[0]}: not supported in a "
                       "schedule", field=f"task.{unsupported[0]}")  # fmt: skip
    stored = task.model_dump(mode="json", exclude_unset=True, exclude=set(OTHER_FIELDS))
    metadata = dict(task.metadata or {})
    taken = [key for key in RESERVED_METADATA if key in metadata]
    if taken:
        raise ApiError(422, "invalid_request", f"task.metadata: '{taken[0]}' is set by the "
                       "schedule on each task it makes", field="task.metadata")  # fmt: skip
    # A due time's ISO form always has this length.
    metadata.update({SCHEDULE_ID_KEY: schedule_id, SCHEDULED_FOR_KEY: iso(0.0)})
    try:
        TaskCreate.model_validate({**stored, "metadata": metadata})
    except ValidationError as exc:
        problem = safe_text(str(exc.errors()[0].get("msg", "invalid")), 200)
        raise ApiError(422, "invalid_request", f"task.metadata: {problem} once the schedule's "
                       f"keys ({', '.join(RESERVED_METADATA)}) are added",
                       field="task.metadata") from None  # fmt: skip
    return stored


@router.get("", response_model=ScheduleList)
async def list_schedules(ctx: Context, tenant: Tenant) -> ScheduleList:
    rows = await anyio.to_thread.run_sync(_store(ctx).for_tenant, tenant, MAX_LISTED)
    return ScheduleList(schedules=[ScheduleSummary.from_row(row) for row in rows])


@router.get("/{schedule_id}", response_model=ScheduleOut, responses=errors(_NOT_FOUND))
async def get_schedule(schedule_id: str, ctx: Context, tenant: Tenant) -> ScheduleOut:
    row = await anyio.to_thread.run_sync(_store(ctx).get, _known_id(schedule_id), tenant)
    if row is None:
        raise _not_found(schedule_id)
    return ScheduleOut.from_row(row)


@router.delete(
    "/{schedule_id}",
    status_code=204,
    response_class=Response,
    responses=errors(_NOT_FOUND),
)
async def delete_schedule(schedule_id: str, ctx: Context, tenant: Tenant) -> Response:
    """Stops its firings; the tasks it made stay."""
    if not await anyio.to_thread.run_sync(_store(ctx).delete, tenant, _known_id(schedule_id)):
        raise _not_found(schedule_id)
    try:
        await ctx.redis.zrem(keys.SCHEDULES_DUE, schedule_id)
    except redis.exceptions.RedisError as exc:  # a deleted schedule's entry drops when due
        log.warning("schedule %s left in the due index: %s", schedule_id, type(exc).__name__)
    return Response(status_code=204)
