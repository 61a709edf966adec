"""/v1/chat/completions: V1's own endpoint, but through V2's queue.

The request becomes a task (same submit path: queues, V1 budget, session order from
`user`), and the answer has V1's shapes (v1-contract.md): a `chat.completion`, or a stream
of chunks that opens with the role chunk at once, ends with `[DONE]`, carries the usage
chunk with `stream_options.include_usage`, and reports a failure after the stream began as
an error chunk inside the 200. Failures before that are the gateway's JSON error envelope
with a 4xx/5xx. A client that disconnects cancels its task, as V1 aborts a run whose
caller goes away.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.api.tasks_read import load_task
from app.bridge import EventBridge
from app.context import GatewayContext
from app.deps import AgentHeader, Context, IdempotencyKey, Tenant
from app.errors import envelope, validation_response
from app.openai_docs import CHAT_RESPONSES, MODELS_RESPONSES, TASK_HEADER
from app.openai_follow import cancel_for_gone_client, follow, unless_disconnected, wait_terminal
from app.openai_requests import ChatCompletionCreate, InvalidRequest
from app.openai_shapes import chat_chunk, chat_completion, chat_failure
from app.submit import submit
from taskrecord.states import EventType, TaskState

router = APIRouter(tags=["openai"])


# As POST /v1/tasks: the request becomes a task through the same submit.
@router.post("/v1/chat/completions", responses=CHAT_RESPONSES)
async def chat_completions(
    body: ChatCompletionCreate,
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
    if accepted is not None:
        created = int(float(accepted["created_at"]))
    else:  # an idempotent replay: follow the first task
        created = int((await load_task(ctx, tenant, task_id)).created_at.timestamp())
    bridge: EventBridge = request.app.state.bridge
    headers = {TASK_HEADER: task_id}
    if body.stream:
        return chat_stream(ctx, bridge, tenant, task_id, created, body, headers)
    ended = await unless_disconnected(request, lambda: wait_terminal(ctx, bridge, tenant, task_id))
    if ended is None:
        await cancel_for_gone_client(ctx, task_id)
        return JSONResponse(envelope("client_closed", "the client disconnected"), 499)
    task = await load_task(ctx, tenant, task_id)
    if task.state == TaskState.SUCCEEDED and task.result is not None:
        return JSONResponse(chat_completion(task, body.model), headers=headers)
    error = task.error.model_dump() if task.error is not None else None
    status, member = chat_failure(task.state, error)
    # The request was accepted and ran: a retry by the client library would run it again.
    return JSONResponse({"error": member}, status, headers={**headers, "x-should-retry": "false"})


@router.get("/v1/models", responses=MODELS_RESPONSES)
async def list_models(ctx: Context, _tenant: Tenant) -> dict[str, Any]:
    """The models a client may name, as V1 lists them: `openclaw` (the default agent) and
    `openclaw/<agent>` for each of V1_AGENTS (or the default agent when that is empty)."""
    agents = ctx.settings.v1_agents or [ctx.settings.v1_default_agent]
    names = ["openclaw", *(f"openclaw/{agent}" for agent in agents)]
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": 0, "owned_by": "openclaw"} for n in names],
    }


def chat_stream(
    ctx: GatewayContext,
    bridge: EventBridge,
    tenant: str,
    task_id: str,
    created: int,
    body: ChatCompletionCreate,
    headers: dict[str, str],
) -> EventSourceResponse:
    model = body.model

    def data(chunk: dict[str, Any]) -> ServerSentEvent:
        return ServerSentEvent(data=orjson.dumps(chunk).decode())

    async def chunks() -> AsyncIterator[ServerSentEvent]:
        # Like V1: the role chunk at once, before the model (here: the queue) answers.
        yield data(chat_chunk(task_id, created, model, {"role": "assistant"}))
        async with aclosing(follow(ctx, bridge, tenant, task_id)) as events:
            async for event in events:
                payload: dict[str, Any] = orjson.loads(event.raw).get("data") or {}
                if event.type == EventType.PROGRESS:
                    delta = {"content": payload.get("delta", "")}
                    yield data(chat_chunk(task_id, created, model, delta))
                elif event.type == EventType.SUCCEEDED:
                    result = payload.get("result") or {}
                    reason = result.get("finish_reason") or "stop"
                    yield data(chat_chunk(task_id, created, model, {}, reason))
                    if body.include_usage and result.get("usage"):
                        yield data(chat_chunk(task_id, created, model, usage=result["usage"]))
                    break
                elif event.terminal:
                    _, member = chat_failure(event.type, payload.get("error"))
                    if event.type != EventType.FAILED:
                        member["message"] = str(payload.get("reason") or member["message"])
                    yield data({"error": {"message": member["message"], "type": member["type"]}})
                    break
        yield ServerSentEvent(data="[DONE]")

    async def on_disconnect(_message: Any) -> None:
        await cancel_for_gone_client(ctx, task_id)

    return EventSourceResponse(
        chunks(), headers=headers, ping=15, send_timeout=30, sep="\n",
        client_close_handler_callable=on_disconnect,
    )  # fmt: skip
