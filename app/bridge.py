"""One Redis pub/sub connection per gateway process, fanning events out to its clients.

Each event is published on its task's channel and, for a task of a conversation, on that
conversation's channel (`taskrecord/lua/prelude.lua`, `emit_for`). The bridge subscribes
only to the channels of the tasks and conversations its own clients follow, so a gateway
with no client following a task receives nothing for that task's events.

Clients never get a Redis connection of their own. Each subscriber has a bounded queue: a
client too slow to keep up is told so (it resumes from its last seq) instead of growing the
gateway's memory. Ordering and exactly-once delivery per task are enforced by `Cursor`,
which also fills any gap (a pub/sub reconnect) from the stored log.

A subscription takes effect a moment after a client asks to follow: when Redis confirms a
task channel, the task's latest event is read from its log and offered to its followers
(their `Cursor` drops it if already sent, or fills the gap before it), so an event published
in between, the final one included, is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Coroutine, Iterable
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from taskrecord import keys
from taskrecord.event_log import Event, read_events
from taskrecord.live import text

log = logging.getLogger(__name__)

RESYNC = object()  # queued to every subscriber after the listener had to reconnect
OVERFLOW = object()  # the subscriber's queue was full: it must resume from its last seq
_TASK = keys.task_events_channel("").encode()
_SESSION = keys.session_events_channel("", "", "").encode().rstrip(b"\n")
_HOME = keys.EVENTS_CHANNEL.encode()  # always subscribed: nothing is published on it
_SESSION_CATCH_UP = 1000  # live tasks of a conversation looked at when following it


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
        self._commander: asyncio.Task[None] | None = None
        self._pubsub: Any = None  # redis.asyncio PubSub, once connected
        self._changes: dict[bytes, bool] = {}  # channel -> subscribe (else unsubscribe)
        self._wake = asyncio.Event()
        self._active: set[bytes] = set()  # conversation channels Redis confirmed
        self._sessions: dict[bytes, tuple[str, str, str]] = {}  # channel -> conversation
        self._background: set[asyncio.Task[None]] = set()
        self.ready = asyncio.Event()
        self.delivered = 0
        self.received = 0  # pub/sub messages taken in (what a gateway pays per event)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="event-bridge")
        self._commander = asyncio.create_task(self._command(), name="event-bridge-commands")
        await asyncio.wait_for(self.ready.wait(), 10)

    async def stop(self) -> None:
        for task in (self._commander, self._task, *self._background):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def add(self, sub: Subscriber) -> None:
        self.subscribers.add(sub)

    def watch_task(self, sub: Subscriber, task_id: str) -> None:
        sub.task_ids.add(task_id)
        subs = self.by_task[task_id]
        if not subs:
            self._want(keys.task_events_channel(task_id).encode(), True)
        subs.add(sub)

    def watch_session(self, sub: Subscriber, agent_id: str, session_id: str) -> None:
        sub.sessions.add((agent_id, session_id))
        name = (sub.tenant, agent_id, session_id)
        subs = self.by_session[name]
        if not subs:
            channel = keys.session_events_channel(*name).encode()
            self._sessions[channel] = name
            self._want(channel, True)
        subs.add(sub)

    def unwatch_task(self, sub: Subscriber, task_id: str) -> None:
        sub.task_ids.discard(task_id)
        self._discard_task(task_id, sub)

    def remove(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)
        for task_id in list(sub.task_ids):
            self._discard_task(task_id, sub)
        for agent_id, session_id in sub.sessions:
            name = (sub.tenant, agent_id, session_id)
            if _discard(self.by_session, name, sub):
                channel = keys.session_events_channel(*name).encode()
                self._sessions.pop(channel, None)
                self._want(channel, False)

    def _discard_task(self, task_id: str, sub: Subscriber) -> None:
        if _discard(self.by_task, task_id, sub):
            self._want(keys.task_events_channel(task_id).encode(), False)

    def _want(self, channel: bytes, on: bool) -> None:
        self._changes[channel] = on
        self._wake.set()

    def _channels(self) -> list[bytes]:
        tasks = [keys.task_events_channel(t).encode() for t in self.by_task]
        sessions = [keys.session_events_channel(*s).encode() for s in self.by_session]
        return [_HOME, *tasks, *sessions]

    async def _command(self) -> None:
        """Sends (un)subscriptions as clients come and go, on the listener's connection
        (Redis answers them there, in order with the messages)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            pubsub = self._pubsub
            if pubsub is None:  # the listener subscribes to everything when it connects
                continue
            changes, self._changes = self._changes, {}
            on = [c for c, wanted in changes.items() if wanted]
            off = [c for c, wanted in changes.items() if not wanted]
            try:
                if on:
                    await pubsub.subscribe(*on)
                if off:
                    await pubsub.unsubscribe(*off)
            except (redis.exceptions.RedisError, OSError) as exc:
                # The listener reconnects and subscribes to what is followed by then.
                log.warning("event bridge (un)subscribe failed: %s", type(exc).__name__)

    async def _run(self) -> None:
        delay = 0.1
        first = True
        while True:
            pubsub = self.client.pubsub()
            try:
                self._active.clear()  # (its `_sessions` stay: they are still followed)
                self._changes.clear()  # all of them are in the subscribe below
                await pubsub.subscribe(*self._channels())
                self._pubsub = pubsub
                self._wake.set()  # changes made while that was on its way
                delay = 0.1
                while True:
                    message = await pubsub.get_message(timeout=30.0)
                    if message is None:
                        continue
                    kind = message["type"]
                    if kind == "message":
                        self._dispatch(message["channel"], message["data"])
                    elif kind == "subscribe":
                        first = self._confirmed(message["channel"], first)
                    elif kind == "unsubscribe":
                        self._active.discard(message["channel"])
            except asyncio.CancelledError:
                raise
            except (redis.exceptions.RedisError, OSError) as exc:
                log.warning("event bridge lost Redis (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _confirmed(self, channel: bytes, first: bool) -> bool:
        """Redis now sends this channel's events. Returns the new `first`."""
        if channel == _HOME:
            self.ready.set()
            if not first:  # a reconnect: whatever was published meanwhile is in the logs
                self._broadcast(self.subscribers, RESYNC)
            return False
        if channel.startswith(_TASK):
            self._spawn(self._offer_task(channel[len(_TASK) :].decode()))
        elif channel.startswith(_SESSION):
            self._active.add(channel)
            name = self._sessions.get(channel)
            if name is not None:
                self._spawn(self._offer_session(name))
        return first

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _offer_task(self, task_id: str) -> None:
        """What was published before the subscription took effect: the latest event of the
        log stands for it (`Cursor.admit` fills in the ones before)."""
        for event in await self._latest([task_id]):
            self._broadcast(self.by_task.get(task_id, set()), event)

    async def _offer_session(self, name: tuple[str, str, str]) -> None:
        """The same for a conversation: the latest event of each of its live tasks (a
        follower gets their history now rather than with their next event)."""
        try:
            ids = await self.client.zrange(keys.session_key(*name), 0, _SESSION_CATCH_UP - 1)
        except (redis.exceptions.RedisError, OSError):
            return
        for event in await self._latest([text(i) for i in ids]):
            self._broadcast(self.by_session.get(name, set()), event)

    async def _latest(self, task_ids: list[str]) -> list[Event]:
        if not task_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for task_id in task_ids:
            pipe.xrevrange(keys.events_key(task_id), count=1)
        try:
            found = await pipe.execute()
        except (redis.exceptions.RedisError, OSError):
            return []  # the listener's reconnect re-subscribes, and resyncs everyone
        return [Event.parse(e[0][1][b"e"]) for e in found if e and e[0][1]]

    def _dispatch(self, channel: bytes, data: bytes) -> None:
        self.received += 1
        tenant, agent_id, session_id, raw = data.decode().split("\n", 3)
        name = (tenant, agent_id, session_id)
        if channel.startswith(_SESSION):
            # Exactly this conversation's followers (the payload names it in full).
            targets = self.by_session.get(name, set())
        else:
            targets = self.by_task.get(channel[len(_TASK) :].decode(), set())
            session = keys.session_events_channel(*name).encode() if session_id else b""
            if session in self._active:  # they get it from the conversation's channel
                targets = targets - self.by_session.get(name, set())
        if targets:
            self._broadcast(targets, Event.parse(raw))

    def _broadcast(self, targets: Iterable[Subscriber], item: object) -> None:
        for sub in list(targets):
            sub.offer(item)
            self.delivered += 1


def _discard(index: dict[Any, set[Subscriber]], name: object, sub: Subscriber) -> bool:
    """Drop `sub` from `index[name]`; True when nobody is left there."""
    subs = index.get(name)
    if subs is not None:
        subs.discard(sub)
        if not subs:
            del index[name]
            return True
    return False


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
