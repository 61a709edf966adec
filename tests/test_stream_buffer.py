"""A slow event consumer is cut off at a bounded buffer, told to resume, never buffered
without end (the gateway's memory stays bounded whatever the client does)."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from app.bridge import Cursor, Subscriber
from deploy.embedded_valkey import EmbeddedValkey
from taskrecord.event_log import Event


def event(seq: int, task_id: str = "t1") -> Event:
    raw = f'{{"type":"progress","task_id":"{task_id}","seq":{seq},"ts":0,"data":{{}}}}'
    return Event.parse(raw)


def test_subscriber_buffer_is_bounded_and_signals_overflow() -> None:
    from app.bridge import OVERFLOW

    sub = Subscriber("tenant", max_buffer=3)
    for seq in range(1, 50):
        sub.offer(event(seq))
    items = [sub.queue.get_nowait() for _ in range(sub.queue.qsize())]
    assert items[:3] == [event(1), event(2), event(3)]
    assert items[3] is OVERFLOW and len(items) == 4
    assert sub.overflowed


def test_cursor_fills_gaps_from_the_log_and_drops_duplicates(valkey: EmbeddedValkey) -> None:
    async def scenario() -> list[int]:
        client = aioredis.Redis.from_url(valkey.url.rsplit("/", 1)[0] + "/63")
        try:
            await client.delete("v2:events:t1")
            for seq in range(1, 6):
                await client.xadd("v2:events:t1", {"e": event(seq).raw}, id=f"0-{seq}")
            cursor = Cursor(client)
            cursor.last["t1"] = 1
            sent = [e.seq for e in await cursor.admit(event(4))]  # 2 and 3 were missed
            sent += [e.seq for e in await cursor.admit(event(3))]  # a late duplicate
            sent += [e.seq for e in await cursor.catch_up("t1")]
            return sent
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == [2, 3, 4, 5]


@pytest.mark.parametrize("after", [0, 2])
def test_catch_up_starts_after_the_given_seq(valkey: EmbeddedValkey, after: int) -> None:
    async def scenario() -> list[int]:
        client = aioredis.Redis.from_url(valkey.url.rsplit("/", 1)[0] + "/62")
        try:
            await client.delete("v2:events:t2")
            for seq in range(1, 4):
                await client.xadd("v2:events:t2", {"e": event(seq, "t2").raw}, id=f"0-{seq}")
            cursor = Cursor(client)
            cursor.last["t2"] = after
            return [e.seq for e in await cursor.catch_up("t2")]
        finally:
            await client.aclose()

    assert asyncio.run(scenario()) == list(range(after + 1, 4))
