"""A worker copies a task's end to SQL without waiting for the write (issue 13: the copy was
a fifth of a short task's worker CPU when waited for one by one). Nothing may be lost by
that: the end's own script leaves the task in SQL_PENDING, due a grace period later; the
worker drops the entry once its batched copy landed, and maintenance copies a task whose
worker died first once it is due. Scripts and maintenance's step against the suite's real
Valkey and a SQLite file; the worker's side through the shared system."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord import keys
from taskrecord.live import LiveStore, finalize_result, text
from taskrecord.settings import get_settings
from taskrecord.sql_pending import forget_copied, retry_pending
from taskrecord.store.db import create_store_engine
from taskrecord.store.repo import TaskStore
from tasks.sql_writer import GRACE_SECONDS
from tests.harness import System, submit, wait_terminal, wait_until


@pytest.fixture
def live(valkey: EmbeddedValkey) -> Iterator[LiveStore]:
    client = redis.Redis.from_url(valkey.url)
    yield LiveStore(client, get_settings(redis_url=valkey.url, v1_url="http://sql-owed"))
    client.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TaskStore]:
    engine = create_store_engine(f"sqlite:///{tmp_path / 'owed.db'}")
    yield TaskStore(engine)
    engine.dispose()


def ended_task(live: LiveStore, sql_due: float | None) -> str:
    """A queued task, ended (succeeded) by finalize with `sql_due`."""
    task_id = queued_task(live)
    call = live.calls.finalize(task_id, "succeeded", result={"content": "ok"}, sql_due=sql_due)
    assert finalize_result(live.run(call)).ended
    return task_id


def queued_task(live: LiveStore) -> str:
    task_id = f"owed-{uuid.uuid4().hex[:10]}"
    live.redis.hset(keys.task_key(task_id), mapping={
        "id": task_id, "state": "queued", "tenant": "t", "agent_id": "main", "priority": "5",
        "created_at": f"{time.time():.6f}", "queue": "short", "dispatch": "1", "attempts": "0",
        "request": json.dumps({"messages": [{"role": "user", "content": "hi"}]}),
    })  # fmt: skip
    live.redis.expire(keys.task_key(task_id), 60)
    return task_id


def pending_score(live: LiveStore, task_id: str) -> float | None:
    return live.redis.zscore(keys.SQL_PENDING, task_id)


def test_an_end_is_owed_to_sql_until_its_copy_lands_or_maintenance_makes_it(
    live: LiveStore, store: TaskStore
) -> None:
    later = time.time() + 60
    waiting = ended_task(live, sql_due=later)  # its worker is still copying it
    orphaned = ended_task(live, sql_due=time.time() - 1)  # its worker died before the copy
    plain = ended_task(live, sql_due=None)  # an ender that copies in place owes nothing
    assert pending_score(live, waiting) == pytest.approx(later, abs=1e-3)
    assert pending_score(live, plain) is None

    retry_pending(live, store)  # maintenance's step: copies what is due, only that
    assert store.get(waiting) is None and pending_score(live, waiting) is not None
    row = store.get(orphaned)
    assert row is not None and row.state == "succeeded" and row.result == {"content": "ok"}
    assert pending_score(live, orphaned) is None

    # The worker's copy landed: it drops the entry at the score it gave, not at another
    # (a write that failed since re-marked the task, due at once: that mark stays).
    forget_copied(live, [(waiting, later + 5)])
    assert pending_score(live, waiting) is not None
    forget_copied(live, [(waiting, later)])
    assert pending_score(live, waiting) is None


def test_a_cancel_that_ends_a_task_owes_its_copy_too(live: LiveStore, store: TaskStore) -> None:
    """A worker's revoke watcher cancels a queued task with the same unwaited copier."""
    owed, plain = queued_task(live), queued_task(live)
    due = time.time() - 1  # its worker died before the copy: due already
    assert text(live.run(live.calls.cancel(owed, "revoked", sql_due=due))[0]) == "cancelled"
    assert text(live.run(live.calls.cancel(plain, "revoked"))[0]) == "cancelled"
    assert pending_score(live, owed) == pytest.approx(due, abs=1e-3)
    assert pending_score(live, plain) is None
    retry_pending(live, store)
    row = store.get(owed)
    assert row is not None and row.state == "cancelled" and pending_score(live, owed) is None


def test_a_worker_drops_what_it_owed_once_its_copies_landed(system: System) -> None:
    """Through the real worker: every end's SQL row is written and its SQL_PENDING entry
    gone well before the grace period after which maintenance would copy it instead."""
    sql = TaskStore(create_store_engine(f"sqlite:///{system.workdir / 'tasks.db'}"))
    client = redis.Redis.from_url(system.redis_url)
    try:
        with system.client() as api:
            ids = [submit(api, f"owed {i} [sim:chunks=2]")["task_id"] for i in range(6)]
            started = time.monotonic()
            assert {wait_terminal(api, t)["state"] for t in ids} == {"succeeded"}

        def copied() -> bool:
            rows = [sql.get(t) for t in ids]
            pending = {text(v) for v in client.zrange(keys.SQL_PENDING, 0, -1)}
            return all(r is not None and r.state == "succeeded" for r in rows) and not (
                pending & set(ids)
            )

        wait_until(copied, GRACE_SECONDS / 3, 0.1, "rows copied and nothing left owed")
        assert time.monotonic() - started < GRACE_SECONDS  # the worker's doing, not maintenance's
        transitions = [t.detail or "" for t in sql.transitions(ids[0])]
        assert any(d.startswith("attempt on") for d in transitions), transitions
    finally:
        client.close()
        sql.engine.dispose()
