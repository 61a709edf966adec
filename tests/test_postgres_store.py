"""The SQL store on PostgreSQL (DATABASE_URL=postgresql+psycopg://...).

Uses the machine's PostgreSQL only when one answers on 127.0.0.1:5432 (set
TEST_POSTGRES_URL to choose another); skips cleanly otherwise. The default suite runs on
SQLite.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from taskrecord.store.db import create_store_engine
from taskrecord.store.models import TaskRow
from taskrecord.store.repo import TaskStore

URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_store() -> TaskStore:
    try:
        engine = create_store_engine(URL)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (OperationalError, ImportError) as exc:
        pytest.skip(f"no PostgreSQL at {URL}: {type(exc).__name__}")
    return TaskStore(engine)


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
