"""Shared by the SSE and WebSocket endpoints: one client's ordered event feed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from app.bridge import OVERFLOW, RESYNC, Cursor, EventBridge, Subscriber
from app.context import GatewayContext
from taskrecord import keys
from taskrecord.event_log import Event

LOG_EXPIRED = (
    "this task's event log expired with its Redis cache (RESULT_TTL); "
    "GET /v1/tasks/{id} still has its result"
)


async def log_expired(ctx: GatewayContext, task_id: str) -> bool:
    """A known task without an event log: it ended longer than RESULT_TTL ago (a live task
    always has its log). Following it would wait for a terminal event that never comes."""
    return not await ctx.redis.exists(keys.events_key(task_id))


@dataclass(frozen=True)
class CatchUp:
    """Queued by a (re)subscription so the one sender sends the backlog in order."""

    task_id: str


class SlowConsumer(Exception):
    pass


class Feed:
    """A subscriber plus its cursor; `events()` yields what to send, strictly in order."""

    def __init__(self, ctx: GatewayContext, bridge: EventBridge, tenant: str) -> None:
        self.bridge = bridge
        self.sub = Subscriber(tenant, ctx.settings.stream_buffer)
        self.cursor = Cursor(ctx.redis)
        bridge.add(self.sub)

    def follow_task(self, task_id: str, after_seq: int = 0) -> None:
        # Never back over what this feed has sent already: a session's live task offered by
        # the bridge a moment before a replay names it too is still sent once.
        self.cursor.last[task_id] = max(after_seq, 0, self.cursor.last.get(task_id, 0))
        self.cursor.ended.discard(task_id)
        self.bridge.watch_task(self.sub, task_id)
        self.sub.queue.put_nowait(CatchUp(task_id))

    def close(self) -> None:
        self.bridge.remove(self.sub)

    async def events(self) -> AsyncIterator[Event]:
        while True:
            item = await self.sub.queue.get()
            if item is OVERFLOW:
                raise SlowConsumer
            if item is RESYNC:
                for task_id in list(self.sub.task_ids):
                    for event in await self.cursor.catch_up(task_id):
                        yield event
            elif isinstance(item, CatchUp):
                for event in await self.cursor.catch_up(item.task_id):
                    yield event
            elif isinstance(item, Event):
                for event in await self.cursor.admit(item):
                    yield event
