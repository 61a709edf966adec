"""V1 token usage per tenant per UTC day, in SQL (see `taskrecord.usage`).

`count_success` runs inside the transaction that turns tasks' rows `succeeded`: an atomic
`INSERT ... ON CONFLICT DO UPDATE` adds the tasks' tokens to their tenants' days, so two
workers finishing at once never lose an increment, and a task counts exactly once (its
row turns `succeeded` once). The rows are small (tenants x days) and are kept when
finished tasks are deleted after RETENTION_DAYS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import BigInteger, Connection, Date, Engine, String, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from taskrecord.store.models import AnyTaskRow, Base
from taskrecord.usage import tokens_of, utc_day


class UsageDayRow(Base):
    """One tenant's V1 usage on one UTC day (the day its tasks finished)."""

    __tablename__ = "usage_days"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    tasks: Mapped[int] = mapped_column(BigInteger, default=0)  # succeeded tasks counted
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    total_tokens: Mapped[int] = mapped_column(BigInteger, default=0)


_SUMMED = ("tasks", "prompt_tokens", "completion_tokens", "total_tokens")
# `INSERT ... ON CONFLICT` per supported database (task rows use it too: task_writes).
INSERTS: dict[str, Any] = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def count_success(conn: Connection, rows: Sequence[AnyTaskRow]) -> None:
    """Add tasks that just succeeded to their tenants' days (inside the caller's
    transaction): one statement for the lot, each (tenant, day) once in it, since one
    multi-row `INSERT ... ON CONFLICT` may not touch a row twice (PostgreSQL)."""
    sums: dict[tuple[str, date], list[int]] = {}
    for row in rows:
        tokens = tokens_of(row.result)
        day = sums.setdefault((row.tenant, utc_day(row.finished_at)), [0, 0, 0, 0])
        for i, added in enumerate((1, tokens.prompt, tokens.completion, tokens.total)):
            day[i] += added
    if not sums:
        return
    values = [
        {"tenant": tenant, "day": day, **dict(zip(_SUMMED, added, strict=True))}
        for (tenant, day), added in sums.items()
    ]
    conn.execute(_ADD_TO_DAY[conn.dialect.name], values)


def _add_to_day(dialect: str) -> Any:
    """`INSERT ... ON CONFLICT DO UPDATE` adding to the day's sums (built once per dialect)."""
    table = UsageDayRow.__table__
    assert isinstance(table, Table)
    stmt = INSERTS[dialect](table)
    added = {name: table.c[name] + stmt.excluded[name] for name in _SUMMED}
    return stmt.on_conflict_do_update(index_elements=["tenant", "day"], set_=added)


_ADD_TO_DAY = {dialect: _add_to_day(dialect) for dialect in INSERTS}


@dataclass(frozen=True)
class UsageTotals:
    tasks: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class UsageStore:
    def __init__(self, engine: Engine) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def days(self, tenant: str, first: date, last: date) -> list[UsageDayRow]:
        """The tenant's days with usage between `first` and `last` (inclusive), oldest first."""
        stmt = (
            select(UsageDayRow)
            .where(UsageDayRow.tenant == tenant, UsageDayRow.day >= first, UsageDayRow.day <= last)
            .order_by(UsageDayRow.day)
        )
        with self._sessions() as session:
            return list(session.scalars(stmt))

    def tokens_on(self, tenant: str, day: date) -> int:
        """The tenant's total tokens of one day (what the daily budget compares)."""
        with self._sessions() as session:
            found = session.get(UsageDayRow, (tenant, day))
            return int(found.total_tokens) if found is not None else 0

    def totals(self) -> dict[str, UsageTotals]:
        """Every tenant's usage over all kept days (the Prometheus counters)."""
        sums = [func.coalesce(func.sum(getattr(UsageDayRow, name)), 0) for name in _SUMMED]
        stmt = select(UsageDayRow.tenant, *sums).group_by(UsageDayRow.tenant)
        with self._sessions() as session:
            return {
                tenant: UsageTotals(*(int(value) for value in rest))
                for tenant, *rest in session.execute(stmt)
            }
