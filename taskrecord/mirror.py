"""Copy a task's live record (Redis hash) into its SQL row after a transition."""

from __future__ import annotations

import json
from typing import Any

from taskrecord.states import TaskState
from taskrecord.store.models import TaskRow
from taskrecord.store.repo import TaskStore, aware, utc


def _json(value: str | None) -> Any:
    if not value:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return None


def sql_fields(live: dict[str, str], partial: str | None = None) -> dict[str, Any]:
    """The SQL columns that change while a task lives, read off its live hash."""
    fields: dict[str, Any] = {
        "attempts": int(live.get("attempts") or 0),
        "queue": live.get("queue") or "short",
        "started_at": utc(float(live["started_at"])) if live.get("started_at") else None,
        "finished_at": utc(float(live["finished_at"])) if live.get("finished_at") else None,
        "result": _json(live.get("result")) or None,
        "error": _json(live.get("error")) or None,
    }
    if partial is not None:
        fields["partial"] = partial
    return fields


def live_fields_from_row(row: TaskRow, tier: str) -> dict[str, str]:
    """Rebuild a live record from the SQL row (its Redis copy expired): for manual retry."""
    created = aware(row.created_at)
    return {
        "id": row.id,
        "tenant": row.tenant,
        "state": TaskState.QUEUED,
        "queue": row.queue,
        "tier": tier,
        "priority": str(row.priority),
        "estimated_seconds": str(row.estimated_seconds),
        "estimate_source": row.estimate_source,
        "agent_id": row.agent_id,
        "session_id": row.session_id or "",
        "created_at": f"{created.timestamp() if created else 0:.6f}",
        "attempts": str(row.attempts),
        "retry_base": str(row.attempts),
        # Past the first dispatch: a revoke remembered by workers must not eat it.
        "dispatch": str(row.attempts + 1),
        "timeout_seconds": str(row.timeout_seconds or ""),
        "request": json.dumps(row.request),
        "metadata": json.dumps(row.metadata_) if row.metadata_ else "",
    }


def row_from_live(live: dict[str, str], partial: str | None) -> TaskRow:
    created = utc(float(live.get("created_at") or 0.0))
    assert created is not None
    request = _json(live.get("request")) or {"messages": []}
    return TaskRow(
        id=live["id"],
        tenant=live.get("tenant", ""),
        state=live.get("state", TaskState.QUEUED),
        priority=int(live.get("priority") or 5),
        estimated_seconds=float(live.get("estimated_seconds") or 0.0),
        estimate_source=live.get("estimate_source") or "heuristic",
        agent_id=live.get("agent_id") or "main",
        session_id=live.get("session_id") or None,
        request=request,
        metadata_=_json(live.get("metadata")),
        timeout_seconds=int(float(live["timeout_seconds"]))
        if live.get("timeout_seconds")
        else None,
        created_at=created,
        **sql_fields(live, partial),
    )


def mirror_live(
    store: TaskStore,
    task_id: str,
    live: dict[str, str],
    partial: str | None,
    detail: str | None,
    *,
    insert_only: bool = False,
) -> None:
    """Write the task's current live state to SQL (inserting the row if it is not there
    yet: the submit path writes Redis only). `insert_only`: see `TaskStore.upsert`."""
    if not live.get("id"):
        return
    store.upsert(row_from_live(live, partial), detail, insert_only=insert_only)
