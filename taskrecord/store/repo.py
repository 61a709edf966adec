"""Reads and writes of the task store. Synchronous: callers choose the thread it runs on."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, Select, delete, select
from sqlalchemy.orm import Session, sessionmaker

from taskrecord.states import TaskState
from taskrecord.store import task_writes
from taskrecord.store.models import AnyTaskRow, TaskRow, TransitionRow
from taskrecord.store.usage import UsageStore


def utc(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts else None


def aware(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; they were written in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True)
class Page:
    rows: list[TaskRow]
    next_cursor: str | None


def encode_cursor(row: TaskRow) -> str:
    created = aware(row.created_at)
    assert created is not None
    raw = f"{created.timestamp():.6f}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """Raises ValueError on a cursor this module did not make."""
    try:
        stamp, _, task_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        created = datetime.fromtimestamp(float(stamp), UTC)
    except (ValueError, UnicodeDecodeError, OverflowError, OSError) as exc:
        # OverflowError / OSError: a timestamp no datetime can hold ("inf", 1e300).
        raise ValueError("cursor is not one this API returned") from exc
    if not task_id:
        raise ValueError("cursor is not one this API returned")
    return created, task_id


class TaskStore:
    def __init__(self, engine: Engine) -> None:
        if not task_writes.supported(engine.dialect.name):
            raise ValueError(
                f"DATABASE_URL: {engine.dialect.name} is not supported (sqlite or postgresql)"
            )
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.usage = UsageStore(engine)  # V1 tokens per tenant per day (`count_success`)

    def _session(self) -> Session:
        return self._sessions()

    def upsert(self, row: AnyTaskRow, detail: str | None, *, insert_only: bool = False) -> None:
        """Insert the task, or update the changing columns of its existing row; either way
        record the transition. Safe against a concurrent writer of the same task (one
        atomic `INSERT ... ON CONFLICT`).

        `insert_only`: a writer whose copy may be older than the row's (maintenance copying
        a new task read from Redis a moment ago) only inserts a missing row: an existing one
        was written by the task's own worker, later, and must not go back in time."""
        with self.engine.begin() as conn:
            if task_writes.upsert_row(conn, row, insert_only=insert_only):
                task_writes.add_transitions(conn, [(row, detail)])

    def upsert_many(self, items: list[tuple[AnyTaskRow, str | None]]) -> None:
        """`upsert` of several writes, in order, in ONE transaction (a worker's queued
        writes: one commit, not one each). Raises if any fails, and then none is written:
        the caller writes them one by one."""
        with self.engine.begin() as conn:
            task_writes.write(conn, items)

    def get(self, task_id: str) -> TaskRow | None:
        with self._session() as session:
            return session.get(TaskRow, task_id)

    def transitions(self, task_id: str) -> list[TransitionRow]:
        with self._session() as session:
            stmt = select(TransitionRow).where(TransitionRow.task_id == task_id)
            return list(session.scalars(stmt.order_by(TransitionRow.id)))

    def page(
        self,
        tenant: str,
        *,
        session_id: str | None = None,
        state: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        error_type: str | None = None,
    ) -> Page:
        stmt = _filtered(select(TaskRow), tenant, state, error_type, session_id)
        if cursor is not None:
            created, task_id = decode_cursor(cursor)
            stmt = stmt.where(
                (TaskRow.created_at < created)
                | ((TaskRow.created_at == created) & (TaskRow.id < task_id))
            )
        stmt = stmt.order_by(TaskRow.created_at.desc(), TaskRow.id.desc()).limit(limit + 1)
        with self._session() as session:
            rows = list(session.scalars(stmt))
        more = len(rows) > limit
        rows = rows[:limit]
        return Page(rows, encode_cursor(rows[-1]) if more and rows else None)

    def conversation(
        self, tenant: str, agent_id: str, session_id: str, *, before: datetime, limit: int
    ) -> list[TaskRow]:
        """The newest `limit` succeeded turns of one conversation before `before`, oldest first."""
        stmt = (
            select(TaskRow)
            .where(
                TaskRow.tenant == tenant,
                TaskRow.session_id == session_id,
                TaskRow.agent_id == agent_id,
                TaskRow.state == TaskState.SUCCEEDED,
                TaskRow.created_at < before,
            )
            .order_by(TaskRow.created_at.desc())
            .limit(limit)
        )
        with self._session() as session:
            return list(reversed(list(session.scalars(stmt))))

    def recent(
        self,
        *,
        state: str | None = None,
        limit: int = 50,
        tenant: str | None = None,
        error_type: str | None = None,
        session_id: str | None = None,
    ) -> list[TaskRow]:
        """Operators' view across tenants (or of one), newest first; also the selection of
        a bulk retry (`taskrecord.dead_letters`)."""
        stmt = _filtered(select(TaskRow), tenant, state, error_type, session_id)
        stmt = stmt.order_by(TaskRow.created_at.desc(), TaskRow.id.desc()).limit(limit)
        with self._session() as session:
            return list(session.scalars(stmt))

    def delete_finished_before(self, cutoff: datetime) -> int:
        with self._session() as session, session.begin():
            result = session.execute(delete(TaskRow).where(TaskRow.finished_at < cutoff))
            return int(getattr(result, "rowcount", 0) or 0)


def _filtered(
    stmt: Select[TaskRow],
    tenant: str | None,
    state: str | None,
    error_type: str | None,
    session_id: str | None,
) -> Select[TaskRow]:
    """`error_type` is the `type` of the error JSON (`failed` tasks' dead-letter reason)."""
    if tenant is not None:
        stmt = stmt.where(TaskRow.tenant == tenant)
    if session_id is not None:
        stmt = stmt.where(TaskRow.session_id == session_id)
    if state is not None:
        stmt = stmt.where(TaskRow.state == state)
    if error_type is not None:
        stmt = stmt.where(TaskRow.error["type"].as_string() == error_type)
    return stmt
