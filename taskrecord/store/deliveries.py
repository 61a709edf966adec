"""Reads and writes of completion webhook deliveries and their attempts (synchronous)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from taskrecord.store.models import DeliveryAttemptRow, DeliveryRow

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class Attempt:
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


@dataclass(frozen=True)
class DeliveryView:
    delivery: DeliveryRow
    attempts: list[DeliveryAttemptRow]


class DeliveryStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def create(self, row: DeliveryRow) -> bool:
        """Insert unless a delivery with this id exists. True if this call inserted it."""
        try:
            with self._sessions() as session, session.begin():
                if session.get(DeliveryRow, row.id) is not None:
                    return False
                session.add(row)
            return True
        except IntegrityError:  # a concurrent maker of the same delivery won
            return False

    def get(self, delivery_id: str) -> DeliveryRow | None:
        with self._sessions() as session:
            return session.get(DeliveryRow, delivery_id)

    def delete(self, delivery_id: str) -> None:
        with self._sessions() as session, session.begin():
            session.execute(delete(DeliveryRow).where(DeliveryRow.id == delivery_id))

    def latest_for_task(self, task_id: str) -> DeliveryRow | None:
        stmt = (
            select(DeliveryRow)
            .where(DeliveryRow.task_id == task_id)
            .order_by(DeliveryRow.created_at.desc())
            .limit(1)
        )
        with self._sessions() as session:
            return session.scalars(stmt).first()

    def for_task(self, task_id: str, limit: int = 100) -> list[DeliveryView]:
        """The task's deliveries, oldest first, each with its attempts in order."""
        with self._sessions() as session:
            deliveries = list(
                session.scalars(
                    select(DeliveryRow)
                    .where(DeliveryRow.task_id == task_id)
                    .order_by(DeliveryRow.created_at, DeliveryRow.id)
                    .limit(limit)
                )
            )
            ids = [d.id for d in deliveries]
            attempts = list(
                session.scalars(
                    select(DeliveryAttemptRow)
                    .where(DeliveryAttemptRow.delivery_id.in_(ids))
                    .order_by(DeliveryAttemptRow.id)
                )
            )
        by_delivery: dict[str, list[DeliveryAttemptRow]] = {i: [] for i in ids}
        for attempt in attempts:
            by_delivery[attempt.delivery_id].append(attempt)
        return [DeliveryView(d, by_delivery[d.id]) for d in deliveries]

    def record_attempt(
        self, delivery_id: str, attempt: Attempt, state: str, next_at: datetime | None
    ) -> None:
        """Keep the attempt and move the delivery on (delivered, failed, or due again)."""
        with self._sessions() as session, session.begin():
            session.add(
                DeliveryAttemptRow(
                    delivery_id=delivery_id,
                    at=attempt.at,
                    status_code=attempt.status_code,
                    error=attempt.error[:300] if attempt.error else None,
                    duration_ms=attempt.duration_ms,
                )
            )
            session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id == delivery_id)
                .values(
                    attempts=DeliveryRow.attempts + 1,
                    state=state,
                    next_attempt_at=next_at,
                    finished_at=None if state == PENDING else attempt.at,
                )
            )

    def give_up(self, delivery_id: str, at: datetime) -> None:
        with self._sessions() as session, session.begin():
            session.execute(
                update(DeliveryRow)
                .where(DeliveryRow.id == delivery_id, DeliveryRow.state == PENDING)
                .values(state=FAILED, next_attempt_at=None, finished_at=at)
            )

    def delete_created_before(self, cutoff: datetime) -> int:
        """Retention: deliveries (and their attempts) older than the tasks kept."""
        with self._sessions() as session, session.begin():
            ids = select(DeliveryRow.id).where(DeliveryRow.created_at < cutoff)
            session.execute(
                delete(DeliveryAttemptRow).where(DeliveryAttemptRow.delivery_id.in_(ids))
            )
            result = session.execute(delete(DeliveryRow).where(DeliveryRow.created_at < cutoff))
            return int(getattr(result, "rowcount", 0) or 0)
