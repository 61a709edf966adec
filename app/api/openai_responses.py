"""/v1/responses: OpenAI's Responses API (background mode) over the same tasks.

A response is a task: created through the same submit path (queues, V1 budget, session
order, retention), and its id is the task id, so it is also /v1/tasks/{id} and the other
way round. `background: true` answers at once (`queued`); otherwise the call waits for the
end, and a client that disconnects cancels its task (V1's own rule). `stream: true` sends
the semantic events (see `app.openai_events`); GET with `stream=true&starting_after=N`
replays and follows them from any gateway replica.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Annotated, Any

import anyio
import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.api.events import MAX_SEQ
from app.api.tasks_read import load_task
from app.bridge import EventBridge
from app.context import GatewayContext
from app.deps import AgentHeader, Context, IdempotencyKey, Tenant
from app.errors import ApiError, envelope, validation_response
from app.openai_docs import (
    RESPONSE_CANCEL_RESPONSES,
    RESPONSE_CREATE_RESPONSES,
    RESPONSE_GET_RESPONSES,
    TASK_HEADER,
)
from app.openai_events import ResponseEvents, first_seq
from app.openai_follow import (
    cancel_for_gone_client,
    follow,
    has_events_after,
    unless_disconnected,
    wait_terminal,
)
from app.openai_requests import InvalidRequest, ResponseCreate
from app.openai_shapes import ResponseBase, response_from_task
from app.schemas import TaskOut
from app.submit import submit
from taskrecord.event_log import read_events
from taskrecord.states import TaskState

router = APIRouter(prefix="/v1/responses", tags=["openai"])
CANCEL_WAIT = 10.0  # seconds a cancel waits for a running task's worker to close V1's call
NO_RETRY = {"x-should-retry": "false"}  # OpenAI's clients would otherwise retry a 409


# As POST /v1/tasks: the request becomes a task through the same submit.
@router.post("", responses=RESPONSE_CREATE_RESPONSES)
async def create_response(
    body: ResponseCreate,
    request: Request,
    ctx: Context,
    tenant: Tenant,
    agent: AgentHeader = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    try:
        task_body = body.task(agent)
    except InvalidRequest as exc:
        return validation_response(exc.errors)
    task_id, accepted = await submit(ctx, tenant, task_body, idempotency_key)
    task = (
        TaskOut.from_live(accepted, None)
        if accepted is not None
        else await load_task(ctx, tenant, task_id)  # an idempotent replay: as it is now
    )
    bridge: EventBridge = request.app.state.bridge
    headers = {TASK_HEADER: task_id}  # as a chat completion's; also readable from a stream
    if body.stream:
        return event_stream(ctx, bridge, tenant, task, None, body.background,
                            not body.background, headers)  # fmt: skip
    if body.background:
        return JSONResponse(response_from_task(task, background=True), headers=headers)
    ended = await unless_disconnected(request, lambda: wait_terminal(ctx, bridge, tenant, task_id))
    if ended is None:
        await cancel_for_gone_client(ctx, task_id)
        return JSONResponse(envelope("client_closed", "the client disconnected"), 499)
    done = await load_task(ctx, tenant, task_id)
    return JSONResponse(response_from_task(done, background=False), headers=headers)


@router.get("/{response_id}", responses=RESPONSE_GET_RESPONSES)
async def get_response(
    response_id: str,
    request: Request,
    ctx: Context,
    tenant: Tenant,
    stream: bool = False,
    starting_after: Annotated[
        int | None,
        Query(ge=0, le=MAX_SEQ, description="With stream=true: events numbered above this."),
    ] = None,
) -> Response:
    task = await load_task(ctx, tenant, response_id)  # 404 unless it is this tenant's
    if not stream:
        return JSONResponse(response_from_task(task))
    bridge: EventBridge = request.app.state.bridge
    return event_stream(ctx, bridge, tenant, task, starting_after, True, False)


@router.post("/{response_id}/cancel", responses=RESPONSE_CANCEL_RESPONSES)
async def cancel_response(
    response_id: str, request: Request, ctx: Context, tenant: Tenant
) -> Response:
    """Queued: cancelled at once. Running: the worker closes its V1 call (V1 aborts the
    run); the answer waits for that, up to CANCEL_WAIT. Already cancelled: the same object
    again. Ended otherwise: 409."""
    await load_task(ctx, tenant, response_id)
    outcome = await anyio.to_thread.run_sync(ctx.control.cancel, response_id)
    if not outcome.ok and outcome.state != TaskState.CANCELLED:
        raise ApiError(409, "conflict", outcome.message, headers=NO_RETRY, state=outcome.state)
    if outcome.state == TaskState.RUNNING:
        bridge: EventBridge = request.app.state.bridge
        with anyio.move_on_after(CANCEL_WAIT):
            await wait_terminal(ctx, bridge, tenant, response_id)
    return JSONResponse(response_from_task(await load_task(ctx, tenant, response_id)))


def event_stream(
    ctx: GatewayContext,
    bridge: EventBridge,
    tenant: str,
    task: TaskOut,
    starting_after: int | None,
    background: bool,
    cancel_on_disconnect: bool,
    headers: dict[str, str] | None = None,
) -> EventSourceResponse:
    async def sse() -> AsyncIterator[ServerSentEvent]:
        async for item in semantic_events(ctx, bridge, tenant, task, starting_after, background):
            yield ServerSentEvent(data=orjson.dumps(item).decode(), event=item["type"])

    async def on_disconnect(_message: Any) -> None:
        await cancel_for_gone_client(ctx, task.task_id)

    # No `id:` lines: OpenAI's SSE decoder keeps the last id across events (per the SSE
    # spec) and would turn each keep-alive comment into an empty event it cannot parse.
    return EventSourceResponse(
        sse(), ping=15, send_timeout=30, sep="\n", headers=headers,
        client_close_handler_callable=on_disconnect if cancel_on_disconnect else None,
    )  # fmt: skip


async def semantic_events(
    ctx: GatewayContext,
    bridge: EventBridge,
    tenant: str,
    task: TaskOut,
    starting_after: int | None,
    background: bool,
) -> AsyncIterator[dict[str, Any]]:
    """The Responses events numbered above `starting_after`, until the task's end."""
    mapper = ResponseEvents(ResponseBase.of(task, background))
    above = -1 if starting_after is None else starting_after
    start = 0 if starting_after is None else first_seq(starting_after)
    if start > 1:  # replay the earlier events only to know whether the item is open
        for event in await read_events(ctx.redis, task.task_id, 0, start - 1):
            mapper.translate(event)
    after_seq = max(start - 1, 0)
    if TaskState(task.state).is_terminal and not await has_events_after(
        ctx, task.task_id, after_seq
    ):
        return  # nothing left to send (or the log has expired: GET still has the result)
    async with aclosing(follow(ctx, bridge, tenant, task.task_id, after_seq)) as events:
        async for event in events:
            for item in mapper.translate(event):
                if item["sequence_number"] > above:
                    yield item
            if event.terminal and not await has_events_after(ctx, task.task_id, event.seq):
                return
