"""A task row's upsert and its transition, as SQL Core statements on one connection.

`INSERT ... ON CONFLICT` (SQLite and PostgreSQL) instead of the ORM's read-then-write: no
identity map, no flush, and the compiled statement is cached. This is the worker's hottest
SQL (a row at claim time and at the finish of every task), written in batches: a batch's
rows go in one multi-row statement (SQLAlchemy's "insertmanyvalues") rather than one
statement each, which on PostgreSQL is one round trip instead of one per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table

from taskrecord.states import TaskState
from taskrecord.store.models import AnyTaskRow, TaskRow, TaskValues, TransitionRow
from taskrecord.store.usage import INSERTS, count_success


def _table(model: type[TaskRow] | type[TransitionRow]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


_TASKS = _table(TaskRow)
_TRANSITIONS = _table(TransitionRow)

# Columns that change while a task lives (the rest are fixed at submit).
CHANGING = ("state", "queue", "attempts", "started_at", "finished_at", "result", "error", "partial")
# ORM attribute -> column name (`metadata_` is the column `metadata`).
_COLUMNS = [(attr.key, attr.columns[0].name) for attr in TaskRow.__mapper__.column_attrs]


def supported(dialect: str) -> bool:
    return dialect in INSERTS


def row_values(row: AnyTaskRow) -> dict[str, Any]:
    if isinstance(row, TaskValues):
        return dict(zip(_VALUE_COLUMNS, row, strict=True))
    return {column: getattr(row, key) for key, column in _COLUMNS}


# TaskValues' fields in order, as column names.
_VALUE_COLUMNS = tuple(dict(_COLUMNS).get(name, name) for name in TaskValues._fields)
assert set(_VALUE_COLUMNS) == {column for _, column in _COLUMNS}, "TaskValues != TaskRow"


@dataclass(frozen=True)
class _Statements:
    """Built once per dialect and executed with each row's values as parameters: building
    a statement per write (its `excluded` columns, its cache key) cost more than running it."""

    insert_only: Any
    update: Any
    first_success: Any

    @classmethod
    def build(cls, dialect: str) -> _Statements:
        insert = INSERTS[dialect](_TASKS)
        changing = {name: insert.excluded[name] for name in CHANGING}
        unfinished = _TASKS.c.state != TaskState.SUCCEEDED.value
        return cls(
            insert_only=insert.on_conflict_do_nothing(index_elements=["id"]).returning(_TASKS.c.id),
            update=insert.on_conflict_do_update(index_elements=["id"], set_=changing),
            first_success=insert.on_conflict_do_update(
                index_elements=["id"], set_=changing, where=unfinished
            ).returning(_TASKS.c.id),
        )


_STATEMENTS = {dialect: _Statements.build(dialect) for dialect in INSERTS}


def upsert_row(conn: Connection, row: AnyTaskRow, *, insert_only: bool) -> bool:
    """Insert the row, or update its changing columns. False: nothing was written (an
    `insert_only` copy found the row there)."""
    if insert_only:
        statement = _STATEMENTS[conn.dialect.name].insert_only
        return conn.execute(statement, row_values(row)).first() is not None
    upsert_rows(conn, [row])
    return True


def upsert_rows(conn: Connection, rows: Sequence[AnyTaskRow]) -> None:
    """Insert or update several rows (distinct tasks): one statement for the unfinished
    ones, one for the succeeded ones (each a single multi-row `INSERT` where the driver
    allows). A row turning `succeeded` counts its usage once: the update of an already
    succeeded row is skipped (`WHERE`), so of two writers of the same success only one sees
    its statement return the row."""
    statements = _STATEMENTS[conn.dialect.name]
    # In id order: each statement takes its row locks in one order, whoever runs it.
    rows = sorted(rows, key=lambda row: row.id)
    unfinished = [row_values(row) for row in rows if row.state != TaskState.SUCCEEDED]
    succeeded = {row.id: row for row in rows if row.state == TaskState.SUCCEEDED}
    if unfinished:
        conn.execute(statements.update, unfinished)
    if succeeded:
        values = [row_values(row) for row in succeeded.values()]
        turned = conn.execute(statements.first_success, values).scalars().all()
        count_success(conn, [succeeded[task_id] for task_id in turned])


def add_transitions(conn: Connection, items: Sequence[tuple[AnyTaskRow, str | None]]) -> None:
    """One history row per write (one `executemany` for a batch)."""
    now = datetime.now(UTC)
    values = [
        {"task_id": row.id, "state": row.state, "at": now, "detail": detail}
        for row, detail in items
    ]
    conn.execute(_TRANSITIONS.insert(), values)


def write(conn: Connection, items: Sequence[tuple[AnyTaskRow, str | None]]) -> None:
    """Several writes in order, inside the caller's transaction: each task's row is
    upserted once, from its last write (the earlier ones it supersedes would be
    overwritten in the same commit), and every write keeps its transition."""
    last: dict[str, AnyTaskRow] = {}
    for row, _ in items:
        last[row.id] = row
    upsert_rows(conn, list(last.values()))
    add_transitions(conn, items)
