"""Following one task for the OpenAI-compatible surfaces, on the shared event machinery.

`follow` is the SSE endpoint's `Feed` (the gateway's one pub/sub bridge, with the `Cursor`
that fills gaps from the stored log) read by code instead of a socket: when it falls
behind (`SlowConsumer`) it simply resumes from its last seq.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from typing import TypeVar

import anyio
from starlette.requests import Request

from app.api.streams import Feed, SlowConsumer
from app.bridge import EventBridge
from app.context import GatewayContext
from taskrecord import keys
from taskrecord.event_log import Event

log = logging.getLogger(__name__)
T = TypeVar("T")
CLIENT_GONE = "the client closed its connection"


async def follow(
    ctx: GatewayContext, bridge: EventBridge, tenant: str, task_id: str, after_seq: int = 0
) -> AsyncGenerator[Event, None]:
    """The task's events with seq > after_seq, in order, live; the caller stops reading."""
    last = after_seq
    while True:
        feed = Feed(ctx, bridge, tenant)
        feed.follow_task(task_id, last)
        try:
            async for event in feed.events():
                last = event.seq
                yield event
        except SlowConsumer:
            continue
        finally:
            feed.close()


async def has_events_after(ctx: GatewayContext, task_id: str, seq: int) -> bool:
    """Whether the log holds an event after `seq` (a task retried after it had ended)."""
    return bool(await ctx.redis.xrange(keys.events_key(task_id), f"0-{seq + 1}", "+", count=1))


async def wait_terminal(
    ctx: GatewayContext, bridge: EventBridge, tenant: str, task_id: str
) -> Event:
    async with aclosing(follow(ctx, bridge, tenant, task_id)) as events:
        async for event in events:
            if event.terminal:
                return event
    raise AssertionError("unreachable: follow() never ends by itself")


async def cancel_for_gone_client(ctx: GatewayContext, task_id: str) -> None:
    """The client that was waiting for this task went away: cancel it, as V1 aborts a run
    whose caller disconnects. A task that has already ended is left as it is."""
    outcome = await anyio.to_thread.run_sync(ctx.control.cancel, task_id, CLIENT_GONE)
    log.info("task %s: client disconnected, cancel -> %s", task_id, outcome.state)


async def unless_disconnected(request: Request, waiter: Callable[[], Awaitable[T]]) -> T | None:
    """`await waiter()`, or None as soon as the client disconnects (the request body has
    been read, so the next ASGI message can only be `http.disconnect`)."""
    result: list[T] = []
    async with anyio.create_task_group() as group:

        async def run() -> None:
            result.append(await waiter())
            group.cancel_scope.cancel()

        async def watch() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass
            group.cancel_scope.cancel()

        group.start_soon(run)
        group.start_soon(watch)
    return result[0] if result else None
