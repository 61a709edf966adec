"""WS /v1/ws: live events for any number of tasks and whole sessions on one socket.

Authenticate with `Authorization: Bearer <key>` on the handshake or with a first message
`{"type": "auth", "api_key": "..."}`. Then send:
- `{"type": "subscribe", "task_id": "...", "after_seq": n}`: the task's events after n
  (missed ones first), then live ones, in order, without duplicates;
- `{"type": "subscribe", "session_id": "...", "agent_id"?: "...", "cursors"?: {task_id: seq},
  "replay"?: bool}`: every task of the session, live (replay: also what is retained);
- `{"type": "unsubscribe", "task_id": "..."}`, `{"type": "ping"}`.
Close codes: 4401 no or bad key, 4008 the client fell too far behind (resubscribe with its
last seqs), 4400 a malformed message.
"""

from __future__ import annotations

import contextlib
import json
import logging

import anyio
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.api.streams import LOG_EXPIRED, Feed, SlowConsumer, log_expired
from app.api.tasks_read import live_fields
from app.context import GatewayContext
from app.deps import bearer_key, tenant_for_key
from app.schemas import AgentId, SessionId
from taskrecord import keys
from taskrecord.live import text

router = APIRouter(tags=["events"])
log = logging.getLogger(__name__)

CLOSE_UNAUTHORIZED = 4401
CLOSE_SLOW = 4008
CLOSE_BAD_MESSAGE = 4400
AUTH_TIMEOUT = 10.0


class Subscribe(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str
    task_id: str | None = None
    after_seq: int = Field(0, ge=0)
    session_id: SessionId | None = None
    agent_id: AgentId | None = None
    cursors: dict[str, int] = Field(default_factory=dict, max_length=1000)
    replay: bool = False


@router.websocket("/v1/ws")
async def websocket_events(ws: WebSocket) -> None:
    ctx: GatewayContext = ws.app.state.ctx
    key = bearer_key(ws.headers.get("authorization"))
    tenant = tenant_for_key(ctx, key) if key else None
    if key and tenant is None:
        await ws.close(CLOSE_UNAUTHORIZED, "unknown API key")
        return
    await ws.accept()
    if tenant is None:
        tenant = await _first_message_auth(ws, ctx)
        if tenant is None:
            return
    feed = Feed(ctx, ws.app.state.bridge, tenant)
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(_send_events, ws, feed, group.cancel_scope)
            await _read_commands(ws, ctx, feed, tenant)
            group.cancel_scope.cancel()
    except WebSocketDisconnect:
        pass
    finally:
        feed.close()


async def _first_message_auth(ws: WebSocket, ctx: GatewayContext) -> str | None:
    try:
        with anyio.fail_after(AUTH_TIMEOUT):
            message = await ws.receive_json()
    except (TimeoutError, ValueError, WebSocketDisconnect):
        message = None
    tenant = None
    if isinstance(message, dict) and message.get("type") == "auth":
        tenant = tenant_for_key(ctx, str(message.get("api_key") or ""))
    if tenant is None:
        with contextlib.suppress(Exception):
            await ws.close(CLOSE_UNAUTHORIZED, "authenticate first: send the API key")
        return None
    await ws.send_json({"type": "authenticated"})
    return tenant


async def _send_events(ws: WebSocket, feed: Feed, scope: anyio.CancelScope) -> None:
    try:
        async for event in feed.events():
            await ws.send_text(event.raw)
    except SlowConsumer:
        with contextlib.suppress(Exception):
            await ws.close(CLOSE_SLOW, "too slow: reconnect and resubscribe with your last seqs")
    except (WebSocketDisconnect, RuntimeError):
        pass
    scope.cancel()


async def _read_commands(ws: WebSocket, ctx: GatewayContext, feed: Feed, tenant: str) -> None:
    while True:
        try:
            raw = await ws.receive_text()
            message = json.loads(raw)
            command = Subscribe.model_validate(message)
        except WebSocketDisconnect:
            return
        except (ValueError, ValidationError) as exc:
            await ws.send_json({"type": "error", "message": _problem(exc)})
            continue
        if command.type == "ping":
            await ws.send_json({"type": "pong"})
        elif command.type == "subscribe" and command.task_id:
            owned = await _owns(ctx, tenant, command.task_id)
            if owned and await log_expired(ctx, command.task_id):
                await ws.send_json(
                    {"type": "error", "task_id": command.task_id, "message": LOG_EXPIRED}
                )
            elif owned:
                feed.follow_task(command.task_id, command.after_seq)
                await ws.send_json({"type": "subscribed", "task_id": command.task_id})
            else:
                await ws.send_json(
                    {
                        "type": "error",
                        "task_id": command.task_id,
                        "message": "no such task for this API key",
                    }
                )
        elif command.type == "subscribe" and command.session_id:
            await _follow_session(ws, ctx, feed, tenant, command)
        elif command.type == "unsubscribe" and command.task_id:
            feed.bridge.unwatch_task(feed.sub, command.task_id)
            await ws.send_json({"type": "unsubscribed", "task_id": command.task_id})
        else:
            await ws.send_json({"type": "error", "message": f"unknown command {command.type!r}"})


async def _follow_session(
    ws: WebSocket, ctx: GatewayContext, feed: Feed, tenant: str, command: Subscribe
) -> None:
    assert command.session_id is not None
    agent_id = command.agent_id or ctx.settings.v1_default_agent
    feed.bridge.watch_session(feed.sub, agent_id, command.session_id)
    backlog: dict[str, int] = {}
    if command.replay:
        backlog = {task_id: 0 for task_id in await _session_tasks(ctx, tenant, agent_id,
                                                                  command.session_id)}  # fmt: skip
    backlog.update(command.cursors)
    for task_id, seq in backlog.items():
        if await _owns(ctx, tenant, task_id):
            feed.follow_task(task_id, seq)
    await ws.send_json(
        {"type": "subscribed", "session_id": command.session_id, "agent_id": agent_id}
    )


async def _session_tasks(
    ctx: GatewayContext, tenant: str, agent_id: str, session_id: str
) -> list[str]:
    """The conversation's tasks, oldest first: the newest ones Redis lists (a task submitted
    or ended a moment ago may not be in SQL yet), after those only SQL still holds, which
    are older than all of them (the list keeps the newest, and expires as a whole)."""
    page = await anyio.to_thread.run_sync(
        lambda: ctx.store.page(tenant, session_id=session_id, limit=keys.SESSION_RECENT)
    )
    raw = await ctx.redis.zrange(keys.session_recent_key(tenant, agent_id, session_id), 0, -1)
    recent = [text(task_id) for task_id in raw]
    listed = set(recent)
    older = [row.id for row in reversed(page.rows) if row.agent_id == agent_id]
    return [task_id for task_id in older if task_id not in listed] + recent


async def _owns(ctx: GatewayContext, tenant: str, task_id: str) -> bool:
    fields, _ = await live_fields(ctx, task_id)
    if fields:
        return fields.get("tenant") == tenant
    row = await anyio.to_thread.run_sync(ctx.store.get, task_id)
    return row is not None and row.tenant == tenant


def _problem(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return "messages must be JSON objects"
