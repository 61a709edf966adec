"""POST /v1/tasks/retry: retry this tenant's ended tasks chosen by a filter (dead letters).

The list of what would be retried is `GET /v1/tasks?state=failed&error_type=...` (newest
first); this retries the first `limit` of that list through the one retry path
(`taskrecord.dead_letters`) and reports each task it retried or skipped.
"""

from __future__ import annotations

from typing import Annotated, Literal

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints

from app.deps import Context, Tenant
from app.errors import envelope
from app.openapi_errors import errors
from app.schemas import Finite, Integral, SessionId
from taskrecord.dead_letters import MAX_BULK_RETRY, retry_matching

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

ErrorType = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")]


class BulkRetryRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"state": "failed", "error_type": "stalled"}]},
    )

    # RETRYABLE_STATES, spelled out: a Literal of TaskState members would put enum reprs in
    # the 422 text (tests/unit/test_task_record.py keeps the two equal).
    state: Literal["failed", "cancelled", "timed_out"] = Field(
        "failed", description="Retry tasks that ended in this state."
    )
    error_type: ErrorType | None = Field(
        None, description="Only tasks whose `error.type` is this (e.g. `stalled`)."
    )
    session_id: SessionId | None = Field(None, description="Only this conversation's tasks.")
    limit: Annotated[StrictInt, Finite, Integral] = Field(
        100, ge=1, le=MAX_BULK_RETRY, description="Most tasks retried by this call, newest first."
    )


class SkippedTask(BaseModel):
    task_id: str
    state: str = Field(description="Its state now (it changed after it was selected).")
    message: str


class BulkRetryOut(BaseModel):
    matched: int = Field(description="Tasks the filter selected (at most `limit`).")
    retried: int = Field(description="Tasks queued for a new attempt.")
    task_ids: list[str] = Field(description="The retried tasks' ids.")
    skipped: list[SkippedTask] = Field(description="Selected but no longer retryable.")


@router.post(
    "/retry",
    status_code=202,
    response_model=BulkRetryOut,
    responses=errors(400, 422),
)
async def retry_tasks(body: BulkRetryRequest, ctx: Context, tenant: Tenant) -> BulkRetryOut:
    """Each selected task starts a new attempt under its id, like POST /v1/tasks/{id}/retry."""
    report = await anyio.to_thread.run_sync(
        lambda: retry_matching(
            ctx.control,
            state=body.state,
            limit=body.limit,
            reason="retried in bulk",
            tenant=tenant,
            error_type=body.error_type,
            session_id=body.session_id,
        )
    )
    return BulkRetryOut(
        matched=report.matched,
        retried=len(report.retried),
        task_ids=report.retried,
        skipped=[
            SkippedTask(task_id=s.task_id, state=s.state, message=s.message) for s in report.skipped
        ],
    )


@router.api_route(
    "/retry", methods=["GET", "PUT", "PATCH", "DELETE", "OPTIONS"], include_in_schema=False
)
async def retry_tasks_other_methods() -> JSONResponse:
    """This path takes POST only. Without this route a GET would reach
    `GET /v1/tasks/{task_id}` as the task "retry", and a 405 would name GET as allowed."""
    return JSONResponse(
        envelope("method_not_allowed", "Method Not Allowed"), 405, headers={"Allow": "POST"}
    )
