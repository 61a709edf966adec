"""Copy a task's live record (Redis hash) into its SQL row after a transition."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from taskrecord.live import dumps
from taskrecord.record import TaskRecord
from taskrecord.states import TaskState
from taskrecord.store.models import AnyTaskRow, TaskValues
from taskrecord.store.repo import TaskStore, aware, utc


def sql_fields(record: TaskRecord, partial: str | None = None) -> dict[str, Any]:
    """The SQL columns that change while a task lives, read off its live record."""
    fields: dict[str, Any] = {
        "attempts": record.attempts,
        "queue": record.queue or "short",
        "started_at": utc(record.started_at),
        "finished_at": utc(record.finished_at),
        "result": record.result or None,
        "error": record.error or None,
    }
    if partial is not None:
        fields["partial"] = partial
    return fields


def record_from_row(row: AnyTaskRow, tier: str) -> TaskRecord:
    """Rebuild a live record from the SQL row (its Redis copy expired): for manual retry."""
    created = aware(row.created_at)
    return TaskRecord(
        id=row.id,
        state=TaskState.QUEUED,
        tenant=row.tenant,
        queue=row.queue,
        tier=tier,
        priority=row.priority,
        estimated_seconds=row.estimated_seconds,
        estimate_source=row.estimate_source,
        agent_id=row.agent_id,
        session_id=row.session_id,
        created_at=created.timestamp() if created else 0.0,
        attempts=row.attempts,
        retry_base=row.attempts,
        # Past the first dispatch: a revoke remembered by workers must not eat it.
        dispatch=row.attempts + 1,
        timeout_seconds=row.timeout_seconds,
        request=dumps(row.request),
        metadata=row.metadata_ or None,
    )


def row_from_record(record: TaskRecord, partial: str | None) -> TaskValues:
    created = utc(record.created_at)
    assert created is not None
    return TaskValues(
        id=record.id,
        tenant=record.tenant,
        state=record.state.value,
        priority=record.priority,
        estimated_seconds=record.estimated_seconds,
        estimate_source=record.estimate_source or "heuristic",
        agent_id=record.agent_id or "main",
        session_id=record.session_id,
        request=_request(record),
        metadata_=record.metadata,
        timeout_seconds=record.timeout_seconds,
        created_at=created,
        **sql_fields(record, partial),
    )


def _request(record: TaskRecord) -> dict[str, Any]:
    try:
        return record.request_body() or {"messages": []}
    except ValueError:  # unreadable: the row still records the task
        return {"messages": []}


def mirror_live(
    store: TaskStore,
    task_id: str,
    live: Mapping[str, str] | TaskRecord,
    partial: str | None,
    detail: str | None,
    *,
    insert_only: bool = False,
) -> None:
    """Write the task's current live state to SQL (inserting the row if it is not there
    yet: the submit path writes Redis only). `insert_only`: see `TaskStore.upsert`. A hash
    with no id or state (its record expired) writes nothing."""
    row = row_from_live(live, partial)
    if row is not None:
        store.upsert(row, detail, insert_only=insert_only)


def row_from_live(live: Mapping[str, str] | TaskRecord, partial: str | None) -> TaskValues | None:
    """The SQL row of a live copy (None: a hash with no id or state, its record expired)."""
    if isinstance(live, TaskRecord):
        return row_from_record(live, partial)
    if live.get("id") and live.get("state"):
        return row_from_record(TaskRecord.from_hash(live), partial)
    return None


class SqlCopy(NamedTuple):
    """A task's copy to make: its live record as `mirror_live` takes it, the transition's
    detail, and its SQL_PENDING score to drop once written (None: it owes none)."""

    task_id: str
    live: Mapping[str, str] | TaskRecord
    partial: str | None
    detail: str | None
    pending: float | None = None
