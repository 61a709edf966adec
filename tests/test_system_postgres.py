"""A whole system on PostgreSQL (DATABASE_URL=postgresql+psycopg://...): gateway, worker and
maintenance keep every task in the suite's own PostgreSQL server, and reads fall back to
it once the Redis record is gone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord import keys
from taskrecord.live import text
from taskrecord.store.db import create_store_engine
from taskrecord.store.repo import TaskStore
from testbed.postgres import EmbeddedPostgres
from tests.harness import System, new_system, submit, tag, wait_terminal, wait_until
from v1sim.process import SimulatorProcess


@pytest.fixture(scope="module")
def pg_url(postgres: EmbeddedPostgres) -> str:
    return postgres.create_database(f"system_{tag()}")


@pytest.fixture(scope="module")
def pg_system(
    valkey: EmbeddedValkey,
    simulator: SimulatorProcess,
    pg_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[System]:
    sys_ = new_system(
        valkey, simulator.url, tmp_path_factory.mktemp("pg-system"), DATABASE_URL=pg_url
    )
    try:
        sys_.start_gateway()
        sys_.start_worker(concurrency=10)
        sys_.start_maintenance()
        yield sys_
    finally:
        sys_.stop()


@pytest.fixture(scope="module")
def pg_store(pg_url: str) -> Iterator[TaskStore]:
    engine = create_store_engine(pg_url)
    yield TaskStore(engine)
    engine.dispose()


def test_task_is_kept_in_postgres_and_served_from_it_once_redis_forgets_it(
    pg_system: System, pg_store: TaskStore
) -> None:
    session = f"pg-{tag()}"
    with pg_system.client() as api:
        task_id = submit(api, "on postgres [sim:chunks=4]", session_id=session)["task_id"]
        done = wait_terminal(api, task_id)
    assert done["state"] == "succeeded", done

    # The row and its history are in PostgreSQL (the system has no other SQL store).
    try:
        row = wait_until(
            lambda: (r := pg_store.get(task_id)) is not None and r.state == "succeeded" and r,
            30,
            0.2,
            "the finished row in PostgreSQL",
        )
    except AssertionError as exc:
        seen = pg_store.get(task_id)
        history = [(t.state, t.detail) for t in pg_store.transitions(task_id)]
        state = seen.state if seen else None
        raise AssertionError(f"{exc}; row state {state}, history {history}") from None
    assert row.result == done["result"] and row.session_id == session
    # Its history: the worker's attempt and the end (maintenance's copy of the submission
    # may land before, between or after them, with the state it read at that moment).
    history = [(t.state, t.detail or "") for t in pg_store.transitions(task_id)]
    assert any(s == "running" and d.startswith("attempt on") for s, d in history), history
    assert ("succeeded", "") in history, history
    assert {s for s, _ in history} <= {"queued", "running", "succeeded"}, history
    assert not (pg_system.workdir / "tasks.db").exists()

    # Redis forgets the task: fetch and list now come from PostgreSQL alone.
    live = redis.Redis.from_url(pg_system.redis_url)
    try:
        live.delete(keys.task_key(task_id), keys.events_key(task_id), keys.partial_key(task_id))
    finally:
        live.close()
    with pg_system.client() as api:
        fetched = api.get(f"/v1/tasks/{task_id}")
        listed = api.get("/v1/tasks", params={"session_id": session})
    assert fetched.status_code == 200, fetched.text
    from_sql = fetched.json()
    assert from_sql["state"] == "succeeded" and from_sql["attempts"] == 1
    assert from_sql["result"] == done["result"]
    assert listed.status_code == 200, listed.text
    assert [t["task_id"] for t in listed.json()["tasks"]] == [task_id]


def test_a_postgres_outage_stops_no_task_and_sql_catches_up(
    pg_system: System, pg_store: TaskStore, postgres: EmbeddedPostgres
) -> None:
    """SQL is written behind the live record: with PostgreSQL stopped, a task claimed
    meanwhile runs (its attempt's SQL write fails quietly) and one that was running ends;
    both rows catch up once PostgreSQL is back (the failed writes are retried)."""
    with pg_system.client() as api:
        before = submit(api, "running through [sim:delay=3]")["task_id"]
        wait_until(
            lambda: (r := pg_store.get(before)) is not None and r.state == "running",
            20, 0.1, "the running row",
        )  # fmt: skip
        pg_store.engine.dispose()
        postgres.halt()
        try:
            during = submit(api, "submitted while SQL is down")["task_id"]
            ended = {t: wait_terminal(api, t, 20)["state"] for t in (before, during)}
            ready = api.get("/readyz")
            live = redis.Redis.from_url(pg_system.redis_url)
            try:
                pending = {text(v) for v in live.zrange(keys.SQL_PENDING, 0, -1)}
            finally:
                live.close()
        finally:
            postgres.resume()
    assert ended == {before: "succeeded", during: "succeeded"}, ended
    assert ready.status_code == 503 and ready.json()["checks"]["sql"].startswith("error")
    assert {before, during} <= pending, pending  # the failed writes wait for maintenance

    def caught_up() -> bool:
        rows = {t: pg_store.get(t) for t in (before, during)}
        return all(r is not None and r.state == "succeeded" for r in rows.values())

    wait_until(caught_up, 30, 0.2, "the SQL rows to catch up")
