"""Project sub-commands of the celery CLI (registered through `celery.commands`).

celery -A tasks retry <task id>            new attempt of a failed/cancelled/timed-out task
celery -A tasks retry --state failed [--error-type T] [--tenant T] [--limit N]
                                           the same for every matching task (dead letters)
celery -A tasks list-tasks [--state S] [--error-type T] [--limit N]
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from celery.bin.base import CeleryCommand

from taskrecord.control import TaskControl
from taskrecord.dead_letters import MAX_BULK_RETRY, RETRYABLE_STATES, BulkRetry, retry_matching
from taskrecord.live import LiveStore
from taskrecord.redis_client import redis_client
from taskrecord.settings import get_settings
from taskrecord.states import TaskState
from taskrecord.store.db import create_store_engine
from taskrecord.store.repo import TaskStore, aware


@contextmanager
def _control(ctx: click.Context) -> Iterator[TaskControl]:
    settings = get_settings()
    client = redis_client(settings)
    store = TaskStore(create_store_engine(settings.database_url))
    try:
        yield TaskControl(settings, LiveStore(client, settings), store, ctx.obj.app)
    finally:
        client.close()
        store.engine.dispose()


@click.command(cls=CeleryCommand, name="retry")
@click.argument("task_id", required=False)
@click.option(
    "--state",
    type=click.Choice([s.value for s in RETRYABLE_STATES]),
    help="Instead of one task: retry the newest --limit tasks in this state.",
)
@click.option("--error-type", help="With --state: only tasks whose error type is this.")
@click.option("--tenant", help="With --state: only this tenant's tasks.")
@click.option("--session-id", help="With --state: only this conversation's tasks.")
@click.option(
    "--limit", type=click.IntRange(1, MAX_BULK_RETRY), default=100, show_default=True,
    help="With --state: the most tasks retried.",
)  # fmt: skip
@click.pass_context
def retry(
    ctx: click.Context,
    task_id: str | None,
    state: str | None,
    error_type: str | None,
    tenant: str | None,
    session_id: str | None,
    limit: int,
) -> None:
    """Start a new attempt of a failed, cancelled or timed-out task (same task id), or of
    every task matching --state and the filters (newest first, at most --limit)."""
    if (task_id is None) == (state is None):
        raise click.UsageError("give one task id, or --state (and filters) for a bulk retry")
    if state is None and (error_type or tenant or session_id):
        raise click.UsageError("--error-type, --tenant and --session-id need --state")
    with _control(ctx) as control:
        if task_id is not None:
            outcome = control.retry(task_id, "retried with the celery CLI")
        else:
            report = retry_matching(
                control, state=str(state), limit=limit, reason="retried in bulk with the "
                "celery CLI", tenant=tenant, error_type=error_type, session_id=session_id,
            )  # fmt: skip
    if task_id is None:
        _echo_bulk(report, limit)
        return
    if not outcome.ok:
        raise click.ClickException(f"{task_id}: {outcome.message}")
    click.echo(f"{task_id}: queued for a new attempt")


def _echo_bulk(report: BulkRetry, limit: int) -> None:
    for retried in report.retried:
        click.echo(f"{retried}: queued for a new attempt")
    for skipped in report.skipped:
        click.echo(f"{skipped.task_id}: skipped, {skipped.message}")
    click.echo(
        f"retried {len(report.retried)} of {report.matched} matching tasks "
        f"({len(report.skipped)} skipped; --limit {limit})"
    )


@click.command(cls=CeleryCommand, name="list-tasks")
@click.option(
    "--state", type=click.Choice([s.value for s in TaskState]), help="Only tasks in this state."
)
@click.option("--error-type", help="Only tasks whose error type is this (e.g. stalled).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def list_tasks(
    ctx: click.Context, state: str | None, error_type: str | None, limit: int, as_json: bool
) -> None:
    """List tasks, newest first (all tenants; no message text)."""
    with _control(ctx) as control:
        rows = control.store.recent(state=state, limit=limit, error_type=error_type)
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
