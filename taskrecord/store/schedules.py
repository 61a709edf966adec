"""Reads and writes of recurring schedules (synchronous; callers choose the thread).

The SQL row is the schedule's truth: it survives restarts and the loss of Redis, whose
due index (`keys.SCHEDULES_DUE`) maintenance rebuilds from here. A firing is recorded by
moving `next_run_at` on with a compare-and-set, so of two instances that fired the same
due time only one records it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, and_, delete, func, or_, select, update
from sqlalchemy.orm import sessionmaker

from taskrecord.store.models import ScheduleRow


def stamp(value: datetime) -> float:
    """Unix time of a stored datetime (SQLite hands them back naive; they were UTC)."""
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


class ScheduleStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def create(self, row: ScheduleRow, limit: int) -> bool:
        """Insert `row` unless its tenant already has `limit` schedules created before it
        (then nothing stays and this answers False). Inserting first and counting after
        means concurrent creators never together pass the limit."""
        with self._sessions() as session, session.begin():
            session.add(row)
        earlier = and_(
            ScheduleRow.tenant == row.tenant,
            or_(
                ScheduleRow.created_at < row.created_at,
                and_(ScheduleRow.created_at == row.created_at, ScheduleRow.id < row.id),
            ),
        )
        with self._sessions() as session:
            ahead = session.scalar(select(func.count()).select_from(ScheduleRow).where(earlier))
        if (ahead or 0) < limit:
            return True
        self._delete(ScheduleRow.id == row.id)
        return False

    def get(self, schedule_id: str, tenant: str | None = None) -> ScheduleRow | None:
        """The schedule, if it exists (and belongs to `tenant`, when given)."""
        with self._sessions() as session:
            row = session.get(ScheduleRow, schedule_id)
        return row if row is not None and tenant in (None, row.tenant) else None

    def for_tenant(self, tenant: str, limit: int) -> list[ScheduleRow]:
        stmt = (
            select(ScheduleRow)
            .where(ScheduleRow.tenant == tenant)
            .order_by(ScheduleRow.created_at, ScheduleRow.id)
            .limit(limit)
        )
        with self._sessions() as session:
            return list(session.scalars(stmt))

    def delete(self, tenant: str, schedule_id: str) -> bool:
        return self._delete(and_(ScheduleRow.id == schedule_id, ScheduleRow.tenant == tenant))

    def _delete(self, where: Any) -> bool:
        with self._sessions() as session, session.begin():
            result = session.execute(delete(ScheduleRow).where(where))
        return bool(getattr(result, "rowcount", 0))

    def due_times(self) -> dict[str, float]:
        """Every schedule's id -> its due time (unix s): what the due index must hold."""
        with self._sessions() as session:
            rows = session.execute(select(ScheduleRow.id, ScheduleRow.next_run_at))
            return {sid: stamp(due) for sid, due in rows}

    def advance(
        self,
        row: ScheduleRow,
        next_run: datetime,
        task_id: str | None,
        error: dict[str, Any] | None,
    ) -> bool:
        """Record the firing of `row`'s due time (its task, or why none was made) and wait
        for `next_run`. False if the row moved on meanwhile (another instance recorded this
        due time) or is gone."""
        values: dict[str, Any] = {
            "next_run_at": next_run,
            "last_run_at": datetime.fromtimestamp(stamp(row.next_run_at), UTC),
            "last_error": error,
        }
        if task_id is not None:
            values.update(last_task_id=task_id, runs=ScheduleRow.runs + 1)
        stmt = (
            update(ScheduleRow)
            .where(ScheduleRow.id == row.id, ScheduleRow.next_run_at == row.next_run_at)
            .values(**values)
        )
        with self._sessions() as session, session.begin():
            result = session.execute(stmt)
        return bool(getattr(result, "rowcount", 0))
