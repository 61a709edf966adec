"""Task control: cancel, pause / resume, retry, time limits, the breaker."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from tests.harness import (
    System,
    new_system,
    submit,
    tag,
    wait_for_state,
    wait_terminal,
    wait_until,
)
from tests.queue_pause import admin, paused, resume_queue
from v1sim.process import SimulatorProcess


def event_types(client: redis.Redis, task_id: str) -> list[str]:
    return [json.loads(f[b"e"])["type"] for _id, f in client.xrange(f"v2:events:{task_id}")]


@pytest.fixture
def long_queue_paused(system: System):  # type: ignore[no-untyped-def]
    """Operators pause the `long` queue: its tasks stay queued until it is resumed (both
    shown by a witness task, see tests/queue_pause.py)."""
    with paused(system, "long"):
        yield


def test_cancel_queued_task_never_calls_v1(
    system: System, simulator: SimulatorProcess, long_queue_paused: None, redis_client
) -> None:  # type: ignore[no-untyped-def]
    marker = tag()
    with system.client() as api:
        task = submit(api, f"never [sim:tag={marker}]", estimated_seconds=600)
        assert task["queue"] == "long"
        cancelled = api.post(f"/v1/tasks/{task['task_id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        # The message is still in the broker: let the worker receive it, then check.
        resume_queue(system, "long")
        dropped = f"task {task['task_id']} not run: terminal"
        wait_until(lambda: dropped in system.processes[1].log(), 15,
                   what="the worker to receive and drop the message")  # fmt: skip
        assert api.get(f"/v1/tasks/{task['task_id']}").json()["state"] == "cancelled"
    assert simulator.requests(tag=marker) == []
    assert event_types(redis_client, task["task_id"]) == ["queued", "cancelled"]


def test_cancel_running_task_closes_v1_call_and_keeps_partial(
    system: System, simulator: SimulatorProcess
) -> None:
    marker = tag()
    with system.client() as api:
        task = submit(
            api, f"long stream [sim:chunks=200] [sim:chunk_delay=0.05] [sim:tag={marker}]"
        )
        task_id = task["task_id"]
        wait_until(lambda: (api.get(f"/v1/tasks/{task_id}").json().get("partial") or "")
                   .count("tok") >= 3, 20, what="some output")  # fmt: skip
        asked_at = time.time()  # the simulator stamps its records with the same clock
        reply = api.post(f"/v1/tasks/{task_id}/cancel")
        assert reply.status_code == 202
        done = wait_terminal(api, task_id, timeout=10)
        assert done["state"] == "cancelled"
        assert done["partial"].startswith("tok0 tok1 tok2 ")
        assert done["error"]["type"] == "cancelled"
        assert api.post(f"/v1/tasks/{task_id}/cancel").status_code == 409
    record = wait_until(lambda: [r for r in simulator.requests(tag=marker) if r["disconnected"]],
                        5, what="V1 saw the disconnect")[0]  # fmt: skip
    # The README's promise: the V1 call is closed "within about a second" of the cancel.
    assert record["ended_at"] - asked_at < 1.0
    assert _seconds(done["finished_at"]) - asked_at < 1.0


def test_cancel_finished_task_is_409_and_changes_nothing(system: System) -> None:
    with system.client() as api:
        task = submit(api, "quick")
        done = wait_terminal(api, task["task_id"])
        reply = api.post(f"/v1/tasks/{task['task_id']}/cancel")
        assert reply.status_code == 409
        assert reply.json()["error"]["state"] == "succeeded"
        assert api.get(f"/v1/tasks/{task['task_id']}").json() == done


def test_pause_and_resume_a_queued_task(
    system: System, simulator: SimulatorProcess, long_queue_paused: None, redis_client
) -> None:  # type: ignore[no-untyped-def]
    marker = tag()
    with system.client() as api:
        task = submit(api, f"hold [sim:chunks=1] [sim:tag={marker}]", estimated_seconds=600)
        task_id = task["task_id"]
        assert api.post(f"/v1/tasks/{task_id}/pause").json()["state"] == "paused"
        resume_queue(system, "long")
        # The worker takes the message, sees the task paused and parks it: V1 not called.
        wait_until(lambda: redis_client.hget(f"v2:task:{task_id}", "parked") == b"paused", 15,
                   what="paused task parked")  # fmt: skip
        assert simulator.requests(tag=marker) == []
        resumed = api.post(f"/v1/tasks/{task_id}/resume")
        assert resumed.status_code == 200  # the answer may already show it running or done
        done = wait_terminal(api, task_id)
    assert done["state"] == "succeeded"
    assert event_types(redis_client, task_id) == [
        "queued", "paused", "resumed", "started", "progress", "succeeded"]  # fmt: skip


def test_pausing_a_running_task_is_409_with_reason(system: System) -> None:
    with system.client() as api:
        task = submit(api, "busy [sim:delay=3]")
        wait_for_state(api, task["task_id"], "running")
        reply = api.post(f"/v1/tasks/{task['task_id']}/pause")
        assert reply.status_code == 409
        assert "V1 cannot pause" in reply.json()["error"]["message"]
        assert api.post(f"/v1/tasks/{task['task_id']}/resume").status_code == 409
        api.post(f"/v1/tasks/{task['task_id']}/cancel")


def test_manual_retry_starts_a_new_attempt_of_the_same_task(
    system: System, simulator: SimulatorProcess, redis_client
) -> None:  # type: ignore[no-untyped-def]
    marker = tag()
    with system.client() as api:
        task = submit(api, f"stubborn [sim:fail=502x4] [sim:tag={marker}]")
        failed = wait_terminal(api, task["task_id"])
        assert failed["state"] == "failed" and failed["attempts"] == 4
        assert api.post(f"/v1/tasks/{task['task_id']}/retry").status_code == 202
        done = wait_terminal(api, task["task_id"])
        assert api.post(f"/v1/tasks/{task['task_id']}/retry").status_code == 409
    assert done["state"] == "succeeded" and done["attempts"] == 5
    assert [r["status"] for r in simulator.requests(tag=marker)] == [502] * 4 + [200]
    types = event_types(redis_client, task["task_id"])
    assert types.count("retrying") == 4 and types[-1] == "succeeded"


def test_admin_endpoints_need_an_operator_key(system: System) -> None:
    with system.client() as api:
        assert api.get("/v1/admin/queues").status_code == 401
    listing = admin(system, "GET", "/queues").json()
    assert set(listing["queues"]) == {"priority", "short", "long"}
    assert listing["breaker"]["state"] == "closed"
    assert admin(system, "POST", "/queues/nope/pause").status_code == 404


def test_time_limits_promote_short_tasks_once_and_expire_queued_ones(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    with new_system(
        valkey,
        simulator.url,
        tmp_path,
        SHORT_TIME_LIMIT="1",
        LONG_TIME_LIMIT="3",
        ABSOLUTE_TIME_LIMIT="600",
    ) as limited:
        limited.start_gateway()
        limited.start_worker(queues="short,priority")
        with limited.client() as api:
            promoted = submit(api, "misjudged [sim:delay=2]")
            too_long = submit(api, "endless [sim:chunks=100] [sim:chunk_delay=0.1]")
            capped = submit(api, "capped [sim:chunks=100] [sim:chunk_delay=0.1]",
                            timeout_seconds=1)  # fmt: skip
            assert wait_terminal(api, promoted["task_id"])["state"] == "succeeded"
            ended = wait_terminal(api, too_long["task_id"])
            capped_end = wait_terminal(api, capped["task_id"])
    # A limit is enforced by the worker's deadline check, every 0.5 s (tasks/watchers.py):
    # the README promises a task is stopped within a second of its limit.
    assert ended["state"] == "timed_out" and ended["partial"].startswith("tok0 ")
    assert 3 <= _ran(ended) < 3 + 1.0  # promoted past the 1 s short tier, stopped at 3 s
    assert capped_end["state"] == "timed_out"
    assert 1 <= _ran(capped_end) < 1 + 1.0


def test_queued_task_expires_at_the_absolute_limit(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    with new_system(valkey, simulator.url, tmp_path, ABSOLUTE_TIME_LIMIT="2") as limited:
        limited.start_gateway()
        limited.start_maintenance()  # no worker: nothing will ever run it
        with limited.client() as api:
            task = submit(api, "forgotten")
            done = wait_terminal(api, task["task_id"], timeout=15)
    assert done["state"] == "timed_out"
    assert "absolute limit" in done["error"]["message"]


COOLDOWN = 2.0


@pytest.fixture(scope="module")
def fragile(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    """Two V1 failures open the breaker; one attempt per task, so each failure is final."""
    overrides = {"BREAKER_THRESHOLD": "2", "BREAKER_COOLDOWN": str(COOLDOWN),
                 "MAX_ATTEMPTS": "1"}  # fmt: skip
    with new_system(valkey, simulator.url, tmp_path_factory.mktemp("fragile"),
                    **overrides) as system:  # fmt: skip
        system.start_gateway()
        system.start_worker()
        system.start_maintenance()
        yield system


def _open_breaker(system: System) -> float:
    with system.client() as api:
        for i in range(2):
            failing = submit(api, f"down {i} [sim:fail=503]")
            assert wait_terminal(api, failing["task_id"])["state"] == "failed"
    breaker = admin(system, "GET", "/breaker").json()
    assert breaker["state"] == "open"
    return float(breaker["opened_at"])


def test_breaker_opens_holds_work_and_closes_after_a_probe(
    fragile: System, simulator: SimulatorProcess
) -> None:
    marker = tag()
    opened_at = _open_breaker(fragile)
    with fragile.client() as api:
        healthy = submit(api, f"fine [sim:tag={marker}]")
        # It waits out the cool-down (checked below against V1's own record).
        done = wait_terminal(api, healthy["task_id"], timeout=20)
    assert admin(fragile, "GET", "/breaker").json()["state"] == "closed"
    assert done["state"] == "succeeded" and done["attempts"] == 1
    assert simulator.requests(tag=marker)[0]["started_at"] >= opened_at + COOLDOWN


def test_a_failed_probe_reopens_the_breaker_for_another_cooldown(
    fragile: System, simulator: SimulatorProcess
) -> None:
    marker = tag()
    first_open = _open_breaker(fragile)
    with fragile.client() as api:
        # Held while open, then let through as the one probe: V1 still fails.
        probe = submit(api, f"probe [sim:fail=503] [sim:tag={marker}-probe]")
        assert wait_terminal(api, probe["task_id"], timeout=20)["state"] == "failed"
        breaker = admin(fragile, "GET", "/breaker").json()
        assert breaker["state"] == "open"
        reopened = float(breaker["opened_at"])
        healthy = submit(api, f"after [sim:tag={marker}-after]")
        done = wait_terminal(api, healthy["task_id"], timeout=20)
    (probe_call,) = simulator.requests(tag=f"{marker}-probe")
    (healthy_call,) = simulator.requests(tag=f"{marker}-after")
    assert probe_call["started_at"] >= first_open + COOLDOWN
    assert reopened >= probe_call["started_at"]  # opened again by the probe's failure
    # The next task waited out a whole new cool-down, then closed the breaker.
    assert healthy_call["started_at"] >= reopened + COOLDOWN
    assert done["state"] == "succeeded" and done["attempts"] == 1
    assert admin(fragile, "GET", "/breaker").json()["state"] == "closed"


def _ran(task: dict[str, str]) -> float:
    return _seconds(task["finished_at"]) - _seconds(task["started_at"])


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()
