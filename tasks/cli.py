"""Project sub-commands of the celery CLI (registered through `celery.commands`).

celery -A tasks retry <task id>            new attempt of a failed/cancelled/timed-out task
celery -A tasks list-tasks [--state S] [--limit N]
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import redis
from celery.bin.base import CeleryCommand

from taskrecord.control import TaskControl
from taskrecord.live import LiveStore
from taskrecord.settings import get_settings
from taskrecord.states import TaskState
from taskrecord.store.db import create_store_engine
from taskrecord.store.repo import TaskStore, aware


@contextmanager
def _control(ctx: click.Context) -> Iterator[TaskControl]:
    settings = get_settings()
    client = redis.Redis.from_url(settings.require_redis_url())
    store = TaskStore(create_store_engine(settings.database_url))
    try:
        yield TaskControl(settings, LiveStore(client, settings), store, ctx.obj.app)
    finally:
        client.close()
        store.engine.dispose()


@click.command(cls=CeleryCommand, name="retry")
@click.argument("task_id")
@click.pass_context
def retry(ctx: click.Context, task_id: str) -> None:
    """Start a new attempt of a failed, cancelled or timed-out task (same task id)."""
    with _control(ctx) as control:
        outcome = control.retry(task_id, "retried with the celery CLI")
    if not outcome.ok:
        raise click.ClickException(f"{task_id}: {outcome.message}")
    click.echo(f"{task_id}: queued for a new attempt")


@click.command(cls=CeleryCommand, name="list-tasks")
@click.option(
    "--state", type=click.Choice([s.value for s in TaskState]), help="Only tasks in this state."
)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def list_tasks(ctx: click.Context, state: str | None, limit: int, as_json: bool) -> None:
    """List tasks, newest first (all tenants; no message text)."""
    with _control(ctx) as control:
        rows = control.store.recent(state=state, limit=limit)
    for row in rows:
        created = aware(row.created_at)
        record: dict[str, Any] = {
            "task_id": row.id,
            "state": row.state,
            "queue": row.queue,
            "priority": row.priority,
            "tenant": row.tenant,
            "attempts": row.attempts,
            "created_at": created.isoformat() if created else None,
            "error": (row.error or {}).get("type") if row.error else None,
        }
        if as_json:
            click.echo(json.dumps(record))
        else:
            click.echo(
                f"{row.id}  {row.state:<9} {row.queue:<8} p{row.priority:<2} "
                f"attempts={row.attempts} tenant={row.tenant} {record['created_at']}"
                + (f" error={record['error']}" if record["error"] else "")
            )
