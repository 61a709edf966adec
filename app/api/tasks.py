"""/v1/tasks: submit, read, list, cancel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Response

from app.api.tasks_read import load_task
from app.deps import Context, IdempotencyKey, Tenant
from app.errors import ApiError
from app.openapi_errors import IDEMPOTENCY_CONFLICT, errors
from app.schemas import TASK_EXAMPLES, TaskCreate, TaskList, TaskOut
from taskrecord.control import Outcome
from taskrecord.states import TaskState

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])


_SUBMIT_ERRORS = errors(
    400,
    (409, "This Idempotency-Key was used for a different request, or the conversation is "
     "busy and `if_busy` is `reject`.",
     {**IDEMPOTENCY_CONFLICT[2],
      "conversation_busy": "this conversation already has a live task (6f0c...); "
      "if_busy=reject"}),
    (413, "Too big: the body (MAX_REQUEST_BYTES, refused before it is read), the text "
     "(MAX_MESSAGE_CHARS) or the number of messages (MAX_MESSAGES).",
     {"request_too_large": "the request body has 3000000 bytes; the limit is 2097152 bytes",
      "message_too_large": "the message has 120000 characters; the limit is 100000",
      "too_many_messages": "messages: has 300 entries; the limit is 200 (MAX_MESSAGES)"}),
    (422, "A field is invalid (`details` names each), the priority is above the tenant's "
     "maximum, or the agent is unknown.",
     {"invalid_request": "message: contains a lone UTF-16 surrogate",
      "priority_not_allowed": "priority: 10 is above this tenant's maximum of 8",
      "unknown_agent": "unknown agent 'x'; known: main, coder"}),
    (429, "A queue or the tenant's share is full, the tenant submits too fast, or it has "
     "used its V1 tokens of the day; retry after `Retry-After` seconds.",
     {"queue_full": "the short queue holds 10000 tasks (limit 10000); retry later",
      "tenant_queue_full": "this tenant has 2000 unfinished tasks, its limit is 2000",
      "rate_limited": "this tenant may submit 100 tasks per second; retry in 1 s",
      "token_budget_exhausted": "this tenant has used 1000312 V1 tokens today (UTC), its "
      "daily budget is 1000000 (TENANT_DAILY_TOKENS); it refills at midnight UTC, in 3600 s"}),
    503,
)  # fmt: skip
_SUBMIT_EXAMPLES = {
    "text": {"summary": "One message", "value": TASK_EXAMPLES[0]},
    "chat": {"summary": "A chat, with a priority and a hint", "value": TASK_EXAMPLES[1]},
}
_ACCEPTED = {
    "description": "Accepted: queued (or, with a reused Idempotency-Key and the same body, "
    "the first task as it is now).",
    "headers": {"Location": {"description": "`/v1/tasks/{task_id}`", "schema": {"type": "string"}}},
}


@router.post(
    "",
    status_code=202,
    response_model=TaskOut,
    responses={202: _ACCEPTED, **_SUBMIT_ERRORS},
    openapi_extra={
        "requestBody": {"content": {"application/json": {"examples": _SUBMIT_EXAMPLES}}}
    },
)
async def create_task(
    body: TaskCreate,
    ctx: Context,
    tenant: Tenant,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> TaskOut:
    from app.submit import submit

    task_id, accepted = await submit(ctx, tenant, body, idempotency_key)
    task = (
        await load_task(ctx, tenant, task_id)  # an idempotent replay: the task as it is now
        if accepted is None
        else TaskOut.from_live(accepted, None)
    )
    # Serialised once by pydantic-core (FastAPI would validate the model a second time).
    return Response(  # type: ignore[return-value]
        task.model_dump_json(), 202, {"Location": f"/v1/tasks/{task_id}"},
        media_type="application/json",
    )  # fmt: skip


@router.get("/{task_id}", response_model=TaskOut, responses=errors(404))
async def get_task(task_id: str, ctx: Context, tenant: Tenant) -> TaskOut:
    return await load_task(ctx, tenant, task_id)


@router.get(
    "",
    response_model=TaskList,
    responses=errors((422, "`limit` outside 1-200, an unknown `state`, or a `cursor` this API "
                      "did not return.",
                      {"invalid_request": "cursor: cursor is not one this API returned"})),
)  # fmt: skip
async def list_tasks(
    ctx: Context,
    tenant: Tenant,
    session_id: str | None = None,
    state: TaskState | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
    error_type: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Only tasks whose `error.type` is this (dead letters: "
            "`state=failed&error_type=stalled`).",
        ),
    ] = None,
) -> TaskList:
    try:
        page = await anyio.to_thread.run_sync(
            lambda: ctx.store.page(
                tenant,
                session_id=session_id,
                state=state.value if state else None,
                limit=limit,
                cursor=cursor,
                error_type=error_type,
            )
        )
    except ValueError as exc:
        raise ApiError(422, "invalid_request", f"cursor: {exc}") from exc
    return TaskList(
        tasks=[TaskOut.from_row(row) for row in page.rows], next_cursor=page.next_cursor
    )


async def _steer(ctx: Context, tenant: str, task_id: str, op: Callable[[str], Outcome]) -> Outcome:
    await load_task(ctx, tenant, task_id)  # 404 unless it is this tenant's task
    outcome = await anyio.to_thread.run_sync(op, task_id)
    if not outcome.ok:
        raise ApiError(409, "conflict", outcome.message, state=outcome.state)
    return outcome


@router.post(
    "/{task_id}/cancel",
    response_model=TaskOut,
    responses={
        200: {"description": "Cancelled at once (it was queued or paused)."},
        202: {"model": TaskOut, "description": "Running: the worker stops it within about a "
              "second and keeps the partial output."},
        **errors(404, (409, "The task has already ended.")),
    },
)  # fmt: skip
async def cancel_task(task_id: str, ctx: Context, tenant: Tenant, response: Response) -> TaskOut:
    """Queued or paused: cancelled at once, V1 never called (200). Running: the worker
    closes its V1 call (V1 aborts the run) and keeps the partial output (202). Ended: 409."""
    outcome = await _steer(ctx, tenant, task_id, ctx.control.cancel)
    if outcome.state == TaskState.RUNNING:
        response.status_code = 202
    return await load_task(ctx, tenant, task_id)


@router.post(
    "/{task_id}/pause",
    response_model=TaskOut,
    responses=errors(404, (409, "Only a queued task can be paused.")),
)
async def pause_task(task_id: str, ctx: Context, tenant: Tenant) -> TaskOut:
    """A paused task is not run until resumed. Only queued tasks: V1 cannot pause a run."""
    await _steer(ctx, tenant, task_id, ctx.control.pause)
    return await load_task(ctx, tenant, task_id)


@router.post(
    "/{task_id}/resume",
    response_model=TaskOut,
    responses=errors(404, (409, "Only a paused task can be resumed.")),
)
async def resume_task(task_id: str, ctx: Context, tenant: Tenant) -> TaskOut:
    await _steer(ctx, tenant, task_id, ctx.control.resume)
    return await load_task(ctx, tenant, task_id)


@router.post(
    "/{task_id}/retry",
    response_model=TaskOut,
    status_code=202,
    responses=errors(404, (409, "Only a failed, cancelled or timed-out task can be retried.")),
)
async def retry_task(task_id: str, ctx: Context, tenant: Tenant) -> TaskOut:
    """A failed, cancelled or timed-out task starts a new attempt under the same id."""
    await _steer(ctx, tenant, task_id, ctx.control.retry)
    return await load_task(ctx, tenant, task_id)
