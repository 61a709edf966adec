"""What outlives what: a Valkey crash (its AOF is replayed), the Redis cache running out (a
manual retry rebuilds the task from SQL), and the SQL retention period (finished tasks past
it are deleted, nothing else).

One system of its own on its own Valkey (the crash test kills that Valkey), with a short
RESULT_TTL so the Redis cache really expires, and two V1 slots so tasks wait in Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord.store.db import create_store_engine
from taskrecord.store.models import TaskRow
from taskrecord.store.repo import TaskStore
from tests.harness import System, new_system, submit, tag, wait_terminal, wait_until
from v1sim.process import SimulatorProcess

RESULT_TTL = 3
TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")


@pytest.fixture(scope="module")
def own_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path_factory.mktemp("durable-valkey"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def durable(
    own_valkey: EmbeddedValkey,
    simulator: SimulatorProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[System]:
    overrides = {"RESULT_TTL": str(RESULT_TTL), "V1_MAX_CONCURRENCY": "2"}
    workdir = tmp_path_factory.mktemp("durable")
    with new_system(own_valkey, simulator.url, workdir, **overrides) as system:
        system.start_gateway()
        system.start_worker()
        system.start_maintenance()
        yield system


def store_of(system: System) -> TaskStore:
    return TaskStore(create_store_engine(f"sqlite:///{system.workdir / 'tasks.db'}"))


def test_manual_retry_after_the_redis_record_expired(
    durable: System, simulator: SimulatorProcess
) -> None:
    marker = tag()
    client = redis.Redis.from_url(durable.redis_url)
    with durable.client() as api:
        task_id = submit(api, f"fails once [sim:fail=400x1] [sim:tag={marker}]")["task_id"]
        failed = wait_terminal(api, task_id)
        assert failed["state"] == "failed" and failed["attempts"] == 1
        live_keys = [f"v2:{kind}:{task_id}" for kind in ("task", "events", "partial")]
        wait_until(lambda: client.exists(*live_keys) == 0, RESULT_TTL + 10, 0.2,
                   "the Redis record to expire (RESULT_TTL)")  # fmt: skip
        assert api.get(f"/v1/tasks/{task_id}").json() == failed  # now from SQL
        retried = api.post(f"/v1/tasks/{task_id}/retry")
        assert retried.status_code == 202, retried.text
        done = wait_terminal(api, task_id)
    client.close()
    assert done["state"] == "succeeded" and done["attempts"] == 2
    assert done["result"]["content"] == "tok0 tok1 tok2 tok3 tok4 "
    assert [r["status"] for r in simulator.requests(tag=marker)] == [400, 200]


def _finished_row(task_id: str, finished: datetime, state: str = "succeeded") -> TaskRow:
    return TaskRow(
        id=task_id, tenant="alpha", state=state, queue="short", priority=5,
        estimated_seconds=1.0, estimate_source="heuristic", agent_id="main",
        session_id=None, request={"messages": []}, metadata_=None, timeout_seconds=None,
        attempts=1, created_at=finished - timedelta(seconds=5),
        started_at=finished - timedelta(seconds=4),
        finished_at=finished if state != "running" else None,
        result=None, error=None, partial=None,
    )  # fmt: skip


def test_retention_deletes_only_finished_tasks_past_retention(durable: System) -> None:
    """RETENTION_DAYS is 30: rows as they will look after 31 days, next to recent ones."""
    store = store_of(durable)
    now = datetime.now(UTC)
    ids = {name: f"00000000-0000-4000-8000-{tag()}" for name in ("old", "recent", "old_live")}
    store.upsert(_finished_row(ids["old"], now - timedelta(days=31)), "seeded")
    store.upsert(_finished_row(ids["recent"], now - timedelta(days=29)), "seeded")
    store.upsert(_finished_row(ids["old_live"], now - timedelta(days=31), "running"), "seeded")
    assert store.transitions(ids["old"])
    # The retention job runs in maintenance, on its first round and every 10 minutes after:
    # a second instance (several may run) runs it now.
    durable.start_maintenance()
    wait_until(lambda: store.get(ids["old"]) is None, 30, 0.2, "the retention job")
    assert store.transitions(ids["old"]) == []  # its history went with it
    assert store.get(ids["recent"]) is not None and store.get(ids["old_live"]) is not None
    with durable.client() as api:
        assert api.get(f"/v1/tasks/{ids['old']}").status_code == 404
        assert api.get(f"/v1/tasks/{ids['recent']}").status_code == 200
    store.engine.dispose()


# Last in the module: it kills the module's Valkey (pytest keeps the file's order).
def test_valkey_crash_replays_the_aof_and_every_accepted_task_ends(
    durable: System, own_valkey: EmbeddedValkey
) -> None:
    """SIGKILL of Valkey (appendfsync everysec; see the README for the loss window), then a
    restart on the same port and data directory: every task that got its 202 is still
    there and ends. Two V1 slots: most tasks wait in Redis when Valkey dies."""
    with durable.client() as api:
        ids = [submit(api, f"through a crash {i} [sim:chunks=8] [sim:chunk_delay=0.05]")
               ["task_id"] for i in range(10)]  # fmt: skip
        wait_until(lambda: any(api.get(f"/v1/tasks/{t}").json()["partial"] for t in ids), 15,
                   0.05, "a task streaming output")  # fmt: skip
    assert own_valkey.process is not None
    own_valkey.process.kill()  # SIGKILL: no SHUTDOWN, no final AOF flush
    own_valkey.process.wait(10)
    restarted = EmbeddedValkey(own_valkey.data_dir, port=own_valkey.port)
    restarted.start()
    own_valkey.process = restarted.process  # the module fixture stops this one
    log = (own_valkey.data_dir / "valkey.log").read_text()
    assert "DB loaded from append only file" in log, log[-2000:]
    client = redis.Redis.from_url(durable.redis_url)
    replayed = [client.exists(f"v2:task:{task_id}") for task_id in ids]
    client.close()
    assert replayed == [1] * len(ids), "accepted tasks missing after the restart"
    with durable.client() as api:
        ends = [wait_terminal(api, task_id, timeout=60) for task_id in ids]
    states = [end["state"] for end in ends]
    assert all(state in TERMINAL for state in states)
    # A task cut off after V1 had streamed may fail as worker_lost (its agent may have
    # acted); none is lost, and the ones still waiting in Redis ran normally.
    assert states.count("succeeded") >= len(ids) - 2, states
    for end in ends:
        if end["state"] != "succeeded":
            assert end["error"]["type"] == "worker_lost", end
