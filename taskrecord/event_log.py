"""Reading a task's event log (a Redis Stream whose entry ids are `0-<seq>`)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis

from taskrecord import keys
from taskrecord.states import TERMINAL_EVENTS


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
    """Events with after_seq < seq (<= until_seq), in order; [] once the log expired."""
    end = f"0-{until_seq}" if until_seq is not None else "+"
    entries = await client.xrange(keys.events_key(task_id), f"0-{after_seq + 1}", end)
    return [Event.parse(fields[b"e"]) for _id, fields in entries or [] if fields]
