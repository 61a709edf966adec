"""Loading a task for one tenant: the live record first, the SQL store after it expires."""

from __future__ import annotations

import uuid

import anyio

from app.context import GatewayContext
from app.errors import not_found
from app.schemas import TaskOut
from taskrecord import keys
from taskrecord.live import pairs, text
from taskrecord.record import TaskRecord


def check_task_id(task_id: str) -> None:
    try:
        uuid.UUID(task_id)
    except ValueError:
        raise not_found(task_id) from None


async def live_fields(ctx: GatewayContext, task_id: str) -> tuple[dict[str, str], str | None]:
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.hgetall(keys.task_key(task_id))
    pipe.get(keys.partial_key(task_id))
    raw_fields, raw_partial = await pipe.execute()
    fields = pairs([v for pair in raw_fields.items() for v in pair])
    return fields, text(raw_partial) if raw_partial is not None else ""


async def load_task(ctx: GatewayContext, tenant: str, task_id: str) -> TaskOut:
    check_task_id(task_id)
    fields, partial = await live_fields(ctx, task_id)
    if fields.get("state"):
        record = TaskRecord.from_hash(fields)
        if record.tenant != tenant:
            raise not_found(task_id)
        return TaskOut.from_record(record, partial)
    row = await anyio.to_thread.run_sync(ctx.store.get, task_id)
    if row is None or row.tenant != tenant:
        raise not_found(task_id)
    return TaskOut.from_row(row)
