"""Moving one task and mirroring it to SQL: cancel, pause, resume, retry, finish, requeue.

One code path for every caller: the gateway (on a worker thread), the celery CLI
sub-commands, the workers and maintenance. Workers pass a `copier` (their `SqlWriter`): their
SQL copies are batched off the event loop and not waited for, an end's copy owed meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from celery import Celery

from taskrecord.live import FinalizeResult, LiveStore, finalize_result, script_answer, text
from taskrecord.message import run_message
from taskrecord.mirror import SqlCopy, record_from_row
from taskrecord.routing import choose_tier
from taskrecord.settings import Settings
from taskrecord.sql_pending import write_behind
from taskrecord.states import TaskState
from taskrecord.store.deliveries import DeliveryStore
from taskrecord.store.repo import TaskStore


@dataclass(frozen=True)
class Outcome:
    ok: bool
    state: str  # the task's state after the call (or what prevented it)
    message: str = ""


class SqlCopier(Protocol):
    """Copies tasks to SQL without waiting for the write (a worker's `SqlWriter`)."""

    grace: float  # how long an end's copy may take before maintenance makes it instead

    def copy(self, copy: SqlCopy) -> None: ...


@dataclass
class TaskControl:
    settings: Settings
    live: LiveStore
    store: TaskStore
    celery: Celery
    # None: each SQL copy is written in place (and waited for) by the caller.
    copier: SqlCopier | None = None

    def finish(
        self,
        task_id: str,
        state: str,
        *,
        token: str = "",
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
        reason: str = "",
        only_from: str = "",
        detail: str | None = None,
        output: str = "",
        sent: int = 0,
    ) -> FinalizeResult:
        """End a task (once), mirror it to SQL. The script itself publishes whoever the
        task was holding back (the next in line for its V1 slot or conversation).
        `output`: the running attempt's last text, announced as progress by the same
        script (`sent`: its bytes already sent as progress)."""
        due = self._sql_due()
        call = self.live.calls.finalize(
            task_id, state, token=token, result=result, error=error, reason=reason,
            only_from=only_from, sql_due=due, output=output, sent=sent,
        )  # fmt: skip
        outcome = finalize_result(self.live.run(call))
        if outcome.ended:
            self._mirror(task_id, detail or reason or None, outcome.detail, outcome.fields, due)
        return outcome

    def requeue(
        self,
        task_id: str,
        token: str,
        delay: float,
        error: Mapping[str, Any],
        queue: str,
        detail: str,
    ) -> bool:
        """Back to `queued` with a new dispatch number, published after `delay` (at once
        by the script when there is none)."""
        raw = self.live.run(self.live.calls.requeue(task_id, token, delay, error, queue))
        answer = script_answer(raw)
        if int(answer.outcome) < 0:
            return False
        self._mirror(task_id, detail, None, answer.fields)
        return True

    def cancel(self, task_id: str, reason: str = "cancelled by request") -> Outcome:
        due = self._sql_due()
        answer = script_answer(self.live.run(self.live.calls.cancel(task_id, reason, due)))
        outcome = answer.outcome
        if outcome == TaskState.CANCELLED:
            self._mirror(task_id, reason, "", answer.fields, due)
            return Outcome(True, TaskState.CANCELLED)
        if outcome == "requested":
            return Outcome(True, TaskState.RUNNING, "the worker is closing its V1 call")
        if outcome == "missing":
            row = self.store.get(task_id)
            state = row.state if row else "missing"
            return Outcome(False, state, "the task has already ended; nothing to cancel")
        state = outcome.partition(":")[2]
        return Outcome(False, state, f"the task has already ended ({state}); nothing to cancel")

    def pause(self, task_id: str) -> Outcome:
        outcome = text(self.live.run(self.live.calls.pause(task_id)))
        if outcome == TaskState.PAUSED:
            self._mirror(task_id, TaskState.PAUSED, "")
            return Outcome(True, TaskState.PAUSED)
        if outcome == TaskState.RUNNING:
            return Outcome(False, outcome, "a running task cannot be paused: V1 cannot pause "
                           "an agent run; cancel it instead")  # fmt: skip
        return Outcome(False, outcome, f"only a queued task can be paused (it is {outcome})")

    def resume(self, task_id: str) -> Outcome:
        raw = self.live.run(self.live.calls.resume(task_id))
        outcome = text(raw[0])
        if outcome != "resumed":
            return Outcome(False, outcome, f"only a paused task can be resumed (it is {outcome})")
        self._mirror(task_id, "resumed", "")
        return Outcome(True, TaskState.QUEUED)

    def retry(self, task_id: str, reason: str = "manual retry") -> Outcome:
        outcome = text(self.live.run(self.live.calls.retry(task_id, time.time(), reason)))
        recreated = outcome == "missing"
        if recreated:  # queued by the same script that rebuilt it
            outcome = self._recreate(task_id)
        if outcome != TaskState.QUEUED:
            return Outcome(False, outcome, "only a failed, cancelled or timed-out task can be "
                           f"retried (it is {outcome})")  # fmt: skip
        self._mirror(task_id, reason, "")
        return Outcome(True, TaskState.QUEUED)

    def _recreate(self, task_id: str) -> str:
        """The live record expired (kept 24 h): rebuild it from the SQL row."""
        row = self.store.get(task_id)
        if row is None:
            return "missing"
        if row.state not in (TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT):
            return row.state
        calls = self.live.calls
        tier = choose_tier(row.estimated_seconds, self.settings)
        # The SQL row has no webhook URL; the task's deliveries do (its end owes another).
        latest = DeliveryStore(self.store.engine).latest_for_task(task_id)
        now = time.time()
        webhook_url = latest.url if latest is not None else ""
        record = record_from_row(row, tier)._replace(created_at=now, webhook_url=webhook_url)
        queued = {"queue": row.queue, "priority": row.priority, "retry": True}
        created = self.live.run(calls.create(
            task_id, record.to_hash(), queued, now + calls.absolute_limit, row.queue,
            self.settings.queue_limit, run_message(task_id, record.dispatch, row.queue),
        ))  # fmt: skip
        return TaskState.QUEUED if text(created) == "1" else "conflict"

    def _sql_due(self) -> float | None:
        """When an end's copy becomes maintenance's to make, if this control's copies are not
        waited for: owed from the end's own script on, so a crash before the copy lands
        leaves the task in SQL_PENDING (None: copies are written in place)."""
        return time.time() + self.copier.grace if self.copier is not None else None

    def _mirror(
        self,
        task_id: str,
        detail: str | None,
        partial: str | None,
        fields: dict[str, str] | None = None,
        pending: float | None = None,
    ) -> None:
        """Copy the record to SQL: from the script's answer when it carried the hash.
        Best-effort: a failed write is left to maintenance (`taskrecord.sql_pending`).
        `pending`: the task's score in SQL_PENDING, dropped once the copy lands."""
        record = fields if fields else self.live.get(task_id)
        if self.copier is not None:
            self.copier.copy(SqlCopy(task_id, record, partial, detail, pending))
        else:
            write_behind(self.live.redis, self.store, task_id, record, partial, detail)
