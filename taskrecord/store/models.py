"""SQL tables: one row per task, one row per state change."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class TaskRow(Base):
    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer)
    estimated_seconds: Mapped[float] = mapped_column(Float)
    estimate_source: Mapped[str] = mapped_column(String(16))
    agent_id: Mapped[str] = mapped_column(String(128))
    session_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    request: Mapped[dict[str, object]] = mapped_column(JSON)
    metadata_: Mapped[dict[str, object] | None] = mapped_column("metadata", JSON, nullable=True)
    timeout_seconds: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    result: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    error: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    partial: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (
        Index("ix_tasks_tenant_created", "tenant", "created_at"),
        Index("ix_tasks_tenant_session", "tenant", "session_id", "created_at"),
        Index("ix_tasks_tenant_state", "tenant", "state", "created_at"),
        Index("ix_tasks_finished", "finished_at"),
    )


class TaskValues(NamedTuple):
    """A `TaskRow`'s columns as a plain tuple: what a worker writes per task (building an
    ORM instance, with its attribute instrumentation, cost as much as the SQL write)."""

    id: str
    tenant: str
    state: str
    queue: str
    priority: int
    estimated_seconds: float
    estimate_source: str
    agent_id: str
    session_id: str | None
    request: dict[str, Any]
    metadata_: dict[str, Any] | None
    timeout_seconds: int | None
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    partial: str | None = None


# A task's row to write: the ORM instance or its plain values.
AnyTaskRow = TaskRow | TaskValues


class TransitionRow(Base):
    """State history: what happened to a task and when (who did it is in `detail`)."""

    __tablename__ = "task_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    detail: Mapped[str | None] = mapped_column(String(256), nullable=True)


class DeliveryRow(Base):
    """One completion webhook message (`id` is its webhook-id), retried until delivered."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(36), index=True)  # no FK: may precede the row
    tenant: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)  # the exact JSON sent (and signed) every attempt
    trigger: Mapped[str] = mapped_column(String(16))  # `ended` or `resend`
    state: Mapped[str] = mapped_column(String(16))  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class DeliveryAttemptRow(Base):
    """One HTTP attempt of a delivery: when, how it ended, how long it took (no body kept)."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(String(300), nullable=True)
    duration_ms: Mapped[float] = mapped_column(Float)


class ScheduleRow(Base):
    """A tenant's recurring schedule: a cron expression in a time zone and the task it
    submits each time (the `POST /v1/tasks` body as given). `next_run_at` is the due time it
    waits for; moving it on is how a firing is recorded (`store/schedules.py`)."""

    __tablename__ = "schedules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    task: Mapped[dict[str, object]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_run_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_run_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_task_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    last_error: Mapped[dict[str, object] | None] = mapped_column(JSON, nullable=True)
    runs: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_schedules_tenant_created", "tenant", "created_at"),)
