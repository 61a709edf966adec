"""Retrying ended tasks in bulk, chosen by a filter (the REST `POST /v1/tasks/retry` and
`celery -A tasks retry --state failed --error-type ...`).

The selection comes from the SQL store (newest first, at most `limit`, the same order as
`GET /v1/tasks`), and each task goes through `TaskControl.retry` like a single retry, so a
task whose state changed meanwhile (someone retried it already) is skipped and reported,
never run twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from taskrecord.control import TaskControl
from taskrecord.states import TaskState

# What may be retried, and the most one call retries (each is a Redis script + a SQL write).
RETRYABLE_STATES = (TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT)
MAX_BULK_RETRY = 1000


@dataclass(frozen=True)
class Skipped:
    task_id: str
    state: str
    message: str


@dataclass
class BulkRetry:
    matched: int = 0
    retried: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def retry_matching(
    control: TaskControl,
    *,
    state: str,
    limit: int,
    reason: str,
    tenant: str | None = None,
    error_type: str | None = None,
    session_id: str | None = None,
) -> BulkRetry:
    """Retry up to `limit` tasks in `state` (one tenant's, or all for operators)."""
    if state not in RETRYABLE_STATES:
        raise ValueError(f"only {', '.join(RETRYABLE_STATES)} tasks can be retried")
    if not 1 <= limit <= MAX_BULK_RETRY:
        raise ValueError(f"limit must be 1-{MAX_BULK_RETRY}")
    rows = control.store.recent(
        state=state, limit=limit, tenant=tenant, error_type=error_type, session_id=session_id
    )
    report = BulkRetry(matched=len(rows))
    for row in rows:
        outcome = control.retry(row.id, reason)
        if outcome.ok:
            report.retried.append(row.id)
        else:
            report.skipped.append(Skipped(row.id, outcome.state, outcome.message))
    return report
