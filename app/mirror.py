"""Copy a task's live record (Redis hash) into its SQL row after a transition."""

from __future__ import annotations

import json
from typing import Any

from app.store.repo import TaskStore, utc


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


def mirror_live(
    store: TaskStore, task_id: str, live: dict[str, str], partial: str | None, detail: str | None
) -> None:
    if not live:
        return
    store.record_transition(
        task_id, live.get("state", "queued"), detail=detail, **sql_fields(live, partial)
    )
