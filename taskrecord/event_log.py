"""Reading a task's event log (a Redis Stream whose entry ids are `0-<seq>`).

The log is bounded (EVENT_LOG_MAXLEN, trimmed from its start while the task runs). A reader
asking for events the log no longer holds gets one `truncated` event in their place, never
a silent gap: it stands for the trimmed seqs (its own seq is the last of them, so resuming
after it is exact) and carries the output the current attempt had streamed before the
kept events, so the output is still whole: `output` plus the `delta`s that follow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from taskrecord import keys
from taskrecord.states import TERMINAL_EVENTS, EventType


@dataclass(frozen=True, slots=True)
class Event:
    """One event, kept as the exact JSON text the worker wrote (sent on without re-encoding)."""

    task_id: str
    seq: int
    type: str
    raw: str

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS

    @classmethod
    def parse(cls, raw: str | bytes) -> Event:
        data = orjson.loads(raw)
        text = raw.decode() if isinstance(raw, bytes) else raw
        return cls(data["task_id"], int(data["seq"]), data["type"], text)


async def read_events(
    client: aioredis.Redis, task_id: str, after_seq: int = 0, until_seq: int | None = None
) -> list[Event]:
    """Events with after_seq < seq (<= until_seq), in order; [] once the log expired. If
    the log was trimmed past after_seq + 1, a `truncated` event comes first."""
    end = f"0-{until_seq}" if until_seq is not None else "+"
    entries = await client.xrange(keys.events_key(task_id), f"0-{after_seq + 1}", end)
    events = _parse(entries)
    if events and events[0].seq == after_seq + 1:
        return events
    if not events and until_seq is None:
        return []  # nothing after after_seq (or no log at all): nothing was missed
    return await _read_truncated(client, task_id, after_seq, until_seq)


def _parse(entries: Any) -> list[Event]:
    return [Event.parse(fields[b"e"]) for _id, fields in entries or [] if fields]


async def _read_truncated(
    client: aioredis.Redis, task_id: str, after_seq: int, until_seq: int | None
) -> list[Event]:
    """The slow path, taken only after a gap: the whole kept log and the partial output,
    read in one transaction so they agree."""
    pipe = client.pipeline(transaction=True)
    pipe.xrange(keys.events_key(task_id), "-", "+")
    pipe.get(keys.partial_key(task_id))
    entries, partial = await pipe.execute()
    kept = _parse(entries)
    wanted = [e for e in kept if e.seq > after_seq and (until_seq is None or e.seq <= until_seq)]
    if not kept or kept[0].seq <= after_seq + 1:
        return wanted  # no gap after all (or no log left)
    return [_truncated(task_id, after_seq, kept, partial or b""), *wanted]


def _truncated(task_id: str, after_seq: int, kept: list[Event], partial: bytes) -> Event:
    # The partial output is the current attempt's deltas (a retry starts it afresh, after a
    # `retrying` event): take away those the kept events still carry.
    carried = b""
    for event in kept:
        if event.type == EventType.RETRYING:
            carried = b""
        elif event.type == EventType.PROGRESS:
            carried += orjson.loads(event.raw)["data"]["delta"].encode()
    before = partial[: len(partial) - len(carried)] if partial.endswith(carried) else b""
    seq = kept[0].seq - 1
    data = {"from_seq": after_seq + 1, "to_seq": seq, "output": before.decode()}
    head = {"type": EventType.TRUNCATED, "task_id": task_id, "seq": seq, "ts": time.time()}
    raw = orjson.dumps({**head, "data": data}).decode()
    return Event(task_id, seq, EventType.TRUNCATED, raw)
