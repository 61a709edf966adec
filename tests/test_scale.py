"""Scale and recovery: crash recovery by lease, the V1 budget, sessions, backpressure."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord.dispatch import dispatch
from taskrecord.settings import get_settings
from tasks.celery_app import create_celery_app
from tests.harness import (
    System,
    new_system,
    submit,
    tag,
    wait_listed,
    wait_terminal,
    wait_until,
)
from v1sim.process import SimulatorProcess


@pytest.fixture
def narrow_simulator(tmp_path: Path) -> Iterator[SimulatorProcess]:
    """A V1 that runs one call at a time: later calls wait inside it, unanswered."""
    with SimulatorProcess(token="sim-token", capacity=1, log_path=tmp_path / "sim.log") as sim:
        yield sim


LEASE = 2.0


def test_killed_worker_task_is_rerun_only_if_v1_had_not_answered(
    valkey: EmbeddedValkey, narrow_simulator: SimulatorProcess, tmp_path: Path
) -> None:
    sim = narrow_simulator
    with new_system(valkey, sim.url, tmp_path, LEASE_SECONDS=str(LEASE)) as crashy:
        crashy.start_gateway()
        crashy.start_maintenance()
        first = crashy.start_worker()
        with crashy.client() as api:
            answered = submit(api, "answered [sim:chunks=900] [sim:chunk_delay=0.1] "
                              "[sim:tag=answered]")  # fmt: skip
            wait_until(
                lambda: (
                    api.get(f"/v1/tasks/{answered['task_id']}").json()["partial"] or ""
                ).startswith("tok0"),
                10,
                what="V1 streaming output",
            )
            waiting = submit(api, "waiting [sim:chunks=2] [sim:tag=waiting]")
            wait_until(lambda: sim.requests(tag="waiting"), 10, what="call waiting in V1")
            crashy.start_worker()  # the survivor, ready before the crash
            killed_at = time.time()  # the simulator stamps its records with this clock
            first.kill()  # SIGKILL, mid-task
            rerun = wait_terminal(api, waiting["task_id"], timeout=30)
            lost = wait_terminal(api, answered["task_id"], timeout=30)
    assert rerun["state"] == "succeeded" and rerun["attempts"] == 2
    assert rerun["result"]["content"] == "tok0 tok1 "
    calls = sim.requests(tag="waiting")
    assert len(calls) == 2 and calls[0]["status"] is None  # first call never answered
    assert lost["state"] == "failed" and lost["error"]["type"] == "worker_lost"
    assert len(sim.requests(tag="answered")) == 1  # answered once: never called again
    # The promise: a dead worker's task is taken up again within a second of its lease
    # running out (maintenance looks every 0.25 s). The lease was renewed at most LEASE
    # seconds before the kill, so both ends come within LEASE + 1 s of it.
    assert calls[1]["started_at"] - killed_at < LEASE + 1.0
    assert datetime.fromisoformat(lost["finished_at"]).timestamp() - killed_at < LEASE + 1.0


def test_redelivered_stale_message_does_not_rerun_a_finished_task(
    system: System, simulator: SimulatorProcess
) -> None:
    marker = tag()
    with system.client() as api:
        task = submit(api, f"once only [sim:tag={marker}]")
        assert wait_terminal(api, task["task_id"])["state"] == "succeeded"
    settings = get_settings(redis_url=system.redis_url, v1_url=system.v1_url)
    celery = create_celery_app(settings)
    try:
        dispatch(celery, task["task_id"], "short", 1)  # the same message, delivered again
    finally:
        celery.close()
    worker = next(p for p in system.processes if p.name.startswith("worker"))
    worker.wait_for_log(f"task {task['task_id']} not run: terminal", 15)
    assert len(simulator.requests(tag=marker)) == 1


def test_v1_budget_is_never_exceeded(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    with new_system(valkey, simulator.url, tmp_path, V1_MAX_CONCURRENCY="3") as budgeted:
        budgeted.start_gateway()
        budgeted.start_worker()
        budgeted.start_worker()
        budgeted.start_maintenance()
        simulator.reset()
        with budgeted.client() as api:
            ids = [submit(api, f"b{i} [sim:delay=0.4]", priority=i % 10)["task_id"]
                   for i in range(24)]  # fmt: skip
            states = [wait_terminal(api, task_id, timeout=60)["state"] for task_id in ids]
    assert states == ["succeeded"] * 24
    peak = simulator.stats()["peak_active"]
    assert 2 <= peak <= 3


def test_tasks_of_one_session_never_overlap_and_keep_submission_order(
    system: System, simulator: SimulatorProcess
) -> None:
    session = f"s-{tag()}"
    plans = [  # different queues, so the broker alone would run them side by side
        {"estimated_seconds": 120, "text": "[sim:delay=1]"},
        {"priority": 9, "text": "[sim:delay=0.3]"},
        {"text": "[sim:delay=0.3]"},
        {"estimated_seconds": 300, "text": "[sim:delay=0.2]"},
    ]
    with system.client() as api:
        ids = []
        for i, plan in enumerate(plans):
            fields = {k: v for k, v in plan.items() if k != "text"}
            ids.append(submit(api, f"step {i} {plan['text']} [sim:tag={session}-{i}]",
                              session_id=session, **fields)["task_id"])  # fmt: skip
        for task_id in ids:
            assert wait_terminal(api, task_id, timeout=30)["state"] == "succeeded"
    calls = sorted((r for i in range(4) for r in simulator.requests(tag=f"{session}-{i}")),
                   key=lambda r: r["started_at"])  # fmt: skip
    assert [r["tag"] for r in calls] == [f"{session}-{i}" for i in range(4)]
    for earlier, later in itertools.pairwise(calls):
        assert earlier["ended_at"] <= later["started_at"]
    # One V1 session for the whole conversation, named without the client's session id.
    (v1_session,) = {r["session"] for r in calls}
    assert v1_session.startswith("agent:main:openai-user:v2-") and session not in v1_session


def snapshot(client: redis.Redis) -> dict[bytes, bytes | None]:
    """Every key of the database with its serialized value."""
    return {key: client.dump(key) for key in sorted(client.scan_iter(count=1000))}


def test_full_queue_answers_429_and_leaves_nothing_behind(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    key = {"Idempotency-Key": f"refused-{tag()}"}
    with new_system(valkey, simulator.url, tmp_path, QUEUE_LIMIT="3") as small:
        small.start_gateway()
        client = redis.Redis.from_url(small.redis_url)
        with small.client() as api:
            accepted = [submit(api, f"q{i}")["task_id"] for i in range(3)]
            before = snapshot(client)
            refused = api.post("/v1/tasks", json={"message": "one too many"}, headers=key)
            assert refused.status_code == 429
            assert int(refused.headers["retry-after"]) > 0
            assert refused.json()["error"]["type"] == "queue_full"
            # No record, no queue entry, no event log, no idempotency key: nothing changed.
            assert snapshot(client) == before
            small.start_worker()
            states = [wait_terminal(api, task_id)["state"] for task_id in accepted]
            # The refused key was not pinned: it now creates a task of its own.
            again = api.post("/v1/tasks", json={"message": "one too many"}, headers=key)
            assert again.status_code == 202 and again.json()["task_id"] not in accepted
            later = wait_terminal(api, again.json()["task_id"])
            expected = [*accepted, again.json()["task_id"]]
            listed = {t["task_id"] for t in wait_listed(api, expected)}
        client.close()
    assert states == ["succeeded"] * 3 and later["state"] == "succeeded"
    assert listed == {*accepted, again.json()["task_id"]}


def test_broker_outage_answers_503_and_accepts_nothing(
    simulator: SimulatorProcess, tmp_path: Path
) -> None:
    with (
        EmbeddedValkey(tmp_path / "own-valkey") as own,
        new_system(own, simulator.url, tmp_path) as isolated,
    ):
        isolated.start_gateway()
        own.stop()  # Redis (broker and store) goes away under a running gateway
        with isolated.client() as api:
            reply = api.post("/v1/tasks", json={"message": "into the void"})
            read = api.get("/v1/tasks/00000000-0000-4000-8000-000000000000")
        ready = httpx.get(f"{isolated.url}/readyz", timeout=10)
    assert reply.status_code == 503
    assert reply.json()["error"]["type"] == "unavailable" and "retry-after" in reply.headers
    assert ready.status_code == 503 and ready.json()["checks"]["redis"] != "ok"
    # Reads need Redis too: a clear 503, not a 500.
    assert read.status_code == 503 and read.json()["error"]["type"] == "unavailable"


def test_worker_above_memory_limit_finishes_its_task_and_exits(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    with new_system(valkey, simulator.url, tmp_path, WORKER_MAX_MEMORY_MB="1") as tight:
        tight.start_gateway()
        with tight.client() as api:
            task = submit(api, "held while draining [sim:delay=7]")
            worker = tight.start_worker()
            assert wait_terminal(api, task["task_id"], timeout=30)["state"] == "succeeded"
        wait_until(lambda: not worker.alive(), 20, what="worker to exit by itself")
    assert "no longer taking tasks" in worker.log()
    assert worker.proc is not None and worker.proc.returncode == 0


def test_message_of_a_worker_killed_before_claiming_is_restored(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    """A worker holding a fetched, unclaimed task (here: waiting for V1's breaker) dies;
    maintenance finds the message in kombu's unacked hash and puts it back."""
    marker = tag()
    settings = {"BREAKER_THRESHOLD": "1", "BREAKER_COOLDOWN": "10", "MAX_ATTEMPTS": "1",
                "ORPHAN_SECONDS": "3"}  # fmt: skip
    with new_system(valkey, simulator.url, tmp_path, **settings) as held:
        held.start_gateway()
        held.start_maintenance()
        first = held.start_worker()
        client = redis.Redis.from_url(held.redis_url)
        with held.client() as api:
            down = submit(api, "down [sim:fail=503]")
            assert wait_terminal(api, down["task_id"])["state"] == "failed"  # breaker opens
            task = submit(api, f"held [sim:tag={marker}]")
            wait_until(lambda: client.hget(f"v2:task:{task['task_id']}", "held_until"), 10,
                       what="the worker holding the task")  # fmt: skip
            first.kill()
            held.start_worker()
            done = wait_terminal(api, task["task_id"], timeout=40)
        client.close()
        maintenance_log = held.processes[1].log()
    assert done["state"] == "succeeded" and done["attempts"] == 1
    assert "its worker died before starting it; re-queued" in maintenance_log
    assert len(simulator.requests(tag=marker)) == 1
