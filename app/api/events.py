"""GET /v1/tasks/{id}/events: the task's events as Server-Sent Events.

`id:` is the event's seq; a client reconnecting with `Last-Event-ID` (browsers do it on
their own) gets exactly what it missed. The stream closes after the terminal event.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.api.streams import LOG_EXPIRED, Feed, SlowConsumer, log_expired
from app.api.tasks_read import load_task
from app.deps import Context, Tenant
from app.errors import ApiError
from app.openapi import event_stream
from app.openapi_errors import errors

router = APIRouter(tags=["events"])
# Seqs are small; a bigger cursor is refused (past 2**64 Redis refused it mid-stream).
MAX_SEQ = 10**15 - 1
SEQ = re.compile(r"[0-9]{1,15}")


@router.get(
    "/v1/tasks/{task_id}/events",
    response_class=EventSourceResponse,
    responses={
        200: event_stream(),
        **errors(404, 410, (422, "`Last-Event-ID` or `after` is not a seq number.")),
    },
)
async def task_events(
    task_id: str,
    request: Request,
    ctx: Context,
    tenant: Tenant,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    after: Annotated[int | None, Query(ge=0, le=MAX_SEQ, description="As Last-Event-ID")] = None,
) -> EventSourceResponse:
    await load_task(ctx, tenant, task_id)  # 404 unless it is this tenant's task
    if await log_expired(ctx, task_id):
        raise ApiError(410, "gone", LOG_EXPIRED)  # EventSource stops reconnecting on it
    if last_event_id and not SEQ.fullmatch(last_event_id):
        raise ApiError(422, "invalid_request", "Last-Event-ID must be a seq number")
    after_seq = int(last_event_id) if last_event_id else (after or 0)
    feed = Feed(ctx, request.app.state.bridge, tenant)
    feed.follow_task(task_id, after_seq)

    async def stream() -> AsyncIterator[ServerSentEvent | dict[str, Any]]:
        try:
            async for event in feed.events():
                yield ServerSentEvent(data=event.raw, id=str(event.seq), event=event.type)
                if event.terminal:
                    return
        except SlowConsumer:
            # Ends the response; EventSource reconnects with Last-Event-ID on its own.
            yield ServerSentEvent(data='{"type":"overflow"}', event="overflow", retry=1000)
        finally:
            feed.close()

    return EventSourceResponse(stream(), ping=15, send_timeout=30)
