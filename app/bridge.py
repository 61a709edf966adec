"""One Redis pub/sub listener per gateway process, fanning events out to its clients.

Clients never get a Redis connection of their own. Each subscriber has a bounded queue: a
client too slow to keep up is told so (it resumes from its last seq) instead of growing the
gateway's memory. Ordering and exactly-once delivery per task are enforced by `Cursor`,
which also fills any gap (a pub/sub reconnect) from the stored log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from taskrecord import keys
from taskrecord.event_log import Event, read_events

log = logging.getLogger(__name__)

RESYNC = object()  # queued to every subscriber after the listener had to reconnect
OVERFLOW = object()  # the subscriber's queue was full: it must resume from its last seq


class Subscriber:
    def __init__(self, tenant: str, max_buffer: int) -> None:
        self.tenant = tenant
        self.queue: asyncio.Queue[object] = asyncio.Queue(max_buffer + 2)
        self.max_buffer = max_buffer
        self.task_ids: set[str] = set()
        self.sessions: set[tuple[str, str]] = set()  # (agent, session)
        self.overflowed = False

    def offer(self, item: object) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= self.max_buffer:
            self.overflowed = True
            self.queue.put_nowait(OVERFLOW)
            return
        self.queue.put_nowait(item)


class EventBridge:
    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.by_task: dict[str, set[Subscriber]] = defaultdict(set)
        self.by_session: dict[tuple[str, str, str], set[Subscriber]] = defaultdict(set)
        self.subscribers: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.delivered = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-bridge")
        await asyncio.wait_for(self.ready.wait(), 10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def add(self, sub: Subscriber) -> None:
        self.subscribers.add(sub)

    def watch_task(self, sub: Subscriber, task_id: str) -> None:
        sub.task_ids.add(task_id)
        self.by_task[task_id].add(sub)

    def watch_session(self, sub: Subscriber, agent_id: str, session_id: str) -> None:
        sub.sessions.add((agent_id, session_id))
        self.by_session[(sub.tenant, agent_id, session_id)].add(sub)

    def unwatch_task(self, sub: Subscriber, task_id: str) -> None:
        sub.task_ids.discard(task_id)
        _discard(self.by_task, task_id, sub)

    def remove(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        for task_id in list(sub.task_ids):
            _discard(self.by_task, task_id, sub)
        for agent_id, session_id in sub.sessions:
            _discard(self.by_session, (sub.tenant, agent_id, session_id), sub)

    async def _run(self) -> None:
        delay = 0.1
        first = True
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.EVENTS_CHANNEL)
                self.ready.set()
                if not first:
                    self._broadcast(self.subscribers, RESYNC)
                first = False
                delay = 0.1
                while True:
                    message = await pubsub.get_message(timeout=30.0)
                    if message is not None:
                        self._dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except (redis.exceptions.RedisError, OSError) as exc:
                log.warning("event bridge lost Redis (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, data: bytes) -> None:
        tenant, agent_id, session_id, raw = data.decode().split("\n", 3)
        targets: set[Subscriber] = set()
        if session_id:
            targets |= self.by_session.get((tenant, agent_id, session_id), set())
        event: Event | None = None
        if self.by_task or targets:
            event = Event.parse(raw)
            targets |= self.by_task.get(event.task_id, set())
        if event is not None and targets:
            self._broadcast(targets, event)

    def _broadcast(self, targets: Iterable[Subscriber], item: object) -> None:
        for sub in list(targets):
            sub.offer(item)
            self.delivered += 1


def _discard(index: dict[Any, set[Subscriber]], name: object, sub: Subscriber) -> None:
    subs = index.get(name)
    if subs is not None:
        subs.discard(sub)
        if not subs:
            del index[name]


class Cursor:
    """Per-task delivery position of one client: in order, no duplicates, no gaps."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.last: dict[str, int] = {}
        self.ended: set[str] = set()

    async def admit(self, event: Event) -> list[Event]:
        """What to send for a live event: missing ones first, nothing if already sent."""
        last = self.last.get(event.task_id, 0)
        if event.seq <= last:
            return []
        batch = [event]
        if event.seq > last + 1:
            batch = await read_events(self.client, event.task_id, last, event.seq)
            if not batch or batch[-1].seq != event.seq:
                batch.append(event)
        return self.mark(batch)

    async def catch_up(self, task_id: str) -> list[Event]:
        return self.mark(await read_events(self.client, task_id, self.last.get(task_id, 0)))

    def mark(self, events: list[Event]) -> list[Event]:
        fresh = []
        for event in events:
            if event.seq > self.last.get(event.task_id, 0):
                self.last[event.task_id] = event.seq
                fresh.append(event)
                if event.terminal:
                    self.ended.add(event.task_id)
        return fresh
