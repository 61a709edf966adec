"""/v1/tasks: submit, read, list, cancel."""

from __future__ import annotations

from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query, Response

from app.api.tasks_read import check_task_id, live_fields, load_task
from app.deps import Context, Tenant
from app.errors import ApiError, not_found
from app.mirror import mirror_live
from app.schemas import TaskCreate, TaskList, TaskOut
from app.states import TaskState

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])


@router.post("", status_code=202, response_model=TaskOut)
async def create_task(
    body: TaskCreate,
    ctx: Context,
    tenant: Tenant,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> TaskOut:
    from app.submit import submit

    task_id, accepted = await submit(ctx, tenant, body, idempotency_key)
    response.headers["Location"] = f"/v1/tasks/{task_id}"
    if accepted is None:  # an idempotent replay: the first task as it is now
        return await load_task(ctx, tenant, task_id)
    return TaskOut.from_live(accepted, None)


@router.get("/{task_id}", response_model=TaskOut)
async def get_task(task_id: str, ctx: Context, tenant: Tenant) -> TaskOut:
    return await load_task(ctx, tenant, task_id)


@router.get("", response_model=TaskList)
async def list_tasks(
    ctx: Context,
    tenant: Tenant,
    session_id: str | None = None,
    state: TaskState | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> TaskList:
    try:
        page = await anyio.to_thread.run_sync(
            lambda: ctx.store.list(
                tenant,
                session_id=session_id,
                state=state.value if state else None,
                limit=limit,
                cursor=cursor,
            )
        )
    except ValueError as exc:
        raise ApiError(422, "invalid_request", f"cursor: {exc}") from exc
    return TaskList(
        tasks=[TaskOut.from_row(row) for row in page.rows], next_cursor=page.next_cursor
    )


@router.post("/{task_id}/cancel", response_model=TaskOut)
async def cancel_task(task_id: str, ctx: Context, tenant: Tenant, response: Response) -> TaskOut:
    """Queued or paused: cancelled at once (V1 is never called). Running: the worker closes
    its V1 call (V1 aborts the run), keeps the partial output, and ends it `cancelled`."""
    check_task_id(task_id)
    fields, _ = await live_fields(ctx, task_id)
    if not fields.get("state") or fields.get("tenant") != tenant:
        await load_task(ctx, tenant, task_id)  # 404, or the finished task from SQL below
        raise ApiError(409, "conflict", "the task has already finished; nothing to cancel")
    outcome = await ctx.live.run(ctx.live.calls.cancel(task_id, "cancelled by request"))
    outcome = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
    if outcome.startswith("terminal:"):
        state = outcome.partition(":")[2]
        raise ApiError(409, "conflict", f"the task has already ended ({state}); nothing to cancel")
    if outcome == "missing":
        raise not_found(task_id)
    if outcome == "cancelled":
        fields, partial = await live_fields(ctx, task_id)
        await anyio.to_thread.run_sync(
            mirror_live, ctx.store, task_id, fields, partial, "cancelled by request"
        )
    else:
        response.status_code = 202  # requested: the worker will end it within about a second
    return await load_task(ctx, tenant, task_id)
