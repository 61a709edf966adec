"""/v1/tasks: submit, read, list, cancel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import anyio
from fastapi import APIRouter, Header, Query, Response

from app.api.tasks_read import load_task
from app.deps import Context, Tenant
from app.errors import ApiError
from app.schemas import TaskCreate, TaskList, TaskOut
from taskrecord.control import Outcome
from taskrecord.states import TaskState

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
            lambda: ctx.store.page(
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


async def _steer(ctx: Context, tenant: str, task_id: str, op: Callable[[str], Outcome]) -> Outcome:
    await load_task(ctx, tenant, task_id)  # 404 unless it is this tenant's task
    outcome = await anyio.to_thread.run_sync(op, task_id)
    if not outcome.ok:
        raise ApiError(409, "conflict", outcome.message, state=outcome.state)
    return outcome


@router.post("/{task_id}/cancel", response_model=TaskOut)
async def cancel_task(task_id: str, ctx: Context, tenant: Tenant, response: Response) -> TaskOut:
    """Queued or paused: cancelled at once, V1 never called (200). Running: the worker
    closes its V1 call (V1 aborts the run) and keeps the partial output (202). Ended: 409."""
    outcome = await _steer(ctx, tenant, task_id, ctx.control.cancel)
    if outcome.state == "running":
        response.status_code = 202
    return await load_task(ctx, tenant, task_id)


@router.post("/{task_id}/pause", response_model=TaskOut)
async def pause_task(task_id: str, ctx: Context, tenant: Tenant) -> TaskOut:
    """A paused task is not run until resumed. Only queued tasks: V1 cannot pause a run."""
    await _steer(ctx, tenant, task_id, ctx.control.pause)
    return await load_task(ctx, tenant, task_id)


@router.post("/{task_id}/resume", response_model=TaskOut)
async def resume_task(task_id: str, ctx: Context, tenant: Tenant) -> TaskOut:
    await _steer(ctx, tenant, task_id, ctx.control.resume)
    return await load_task(ctx, tenant, task_id)


@router.post("/{task_id}/retry", response_model=TaskOut, status_code=202)
async def retry_task(task_id: str, ctx: Context, tenant: Tenant) -> TaskOut:
    """A failed, cancelled or timed-out task starts a new attempt under the same id."""
    await _steer(ctx, tenant, task_id, ctx.control.retry)
    return await load_task(ctx, tenant, task_id)
