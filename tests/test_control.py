"""Task control: cancel, pause / resume, retry, time limits, the breaker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from tests.harness import (
    ADMIN_KEY,
    System,
    new_system,
    submit,
    tag,
    wait_for_state,
    wait_terminal,
    wait_until,
)
from v1sim.process import SimulatorProcess


def admin(system: System, method: str, path: str) -> httpx.Response:
    return httpx.request(method, f"{system.url}/v1/admin{path}",
                         headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10)  # fmt: skip


def event_types(client: redis.Redis, task_id: str) -> list[str]:
    return [json.loads(f[b"e"])["type"] for _id, f in client.xrange(f"v2:events:{task_id}")]


@pytest.fixture
def long_queue_paused(system: System):  # type: ignore[no-untyped-def]
    """Operators pause the `long` queue: its tasks stay queued until it is resumed."""
    reply = admin(system, "POST", "/queues/long/pause")
    assert reply.status_code == 200 and reply.json()["paused"] is True
    assert admin(system, "GET", "/queues").json()["queues"]["long"]["paused"] is True
    yield
    assert admin(system, "POST", "/queues/long/resume").status_code == 200


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
        admin(system, "POST", "/queues/long/resume")
        wait_until(lambda: redis_client.llen("long") == 0, 15, what="long queue drained")
        assert system.processes[1].log().count(f"task {task['task_id']} not run: terminal")
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
        started = time.monotonic()
        reply = api.post(f"/v1/tasks/{task_id}/cancel")
        assert reply.status_code == 202
        done = wait_terminal(api, task_id, timeout=10)
        took = time.monotonic() - started
        assert done["state"] == "cancelled"
        assert done["partial"].startswith("tok0 tok1 tok2 ")
        assert done["error"]["type"] == "cancelled"
        assert api.post(f"/v1/tasks/{task_id}/cancel").status_code == 409
    assert took < 5  # "within about a second", with room for a loaded CI machine
    record = wait_until(lambda: [r for r in simulator.requests(tag=marker) if r["disconnected"]],
                        5, what="V1 saw the disconnect")[0]  # fmt: skip
    assert record["ended_at"] - record["started_at"] < 12  # aborted, not run to its end


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
        admin(system, "POST", "/queues/long/resume")
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
    assert ended["state"] == "timed_out" and ended["partial"].startswith("tok0 ")
    assert 2.5 < (_seconds(ended["finished_at"]) - _seconds(ended["started_at"])) < 9
    assert capped_end["state"] == "timed_out"
    assert _seconds(capped_end["finished_at"]) - _seconds(capped_end["started_at"]) < 2.5


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


def test_breaker_opens_holds_work_and_closes_after_a_probe(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    marker = tag()
    with new_system(
        valkey,
        simulator.url,
        tmp_path,
        BREAKER_THRESHOLD="2",
        BREAKER_COOLDOWN="3",
        MAX_ATTEMPTS="1",
    ) as fragile:
        fragile.start_gateway()
        fragile.start_worker()
        fragile.start_maintenance()
        with fragile.client() as api:
            for i in range(2):
                failing = submit(api, f"down {i} [sim:fail=503]")
                assert wait_terminal(api, failing["task_id"])["state"] == "failed"
            breaker = admin(fragile, "GET", "/breaker").json()
            assert breaker["state"] == "open"
            opened_at = float(breaker["opened_at"])
            healthy = submit(api, f"fine [sim:tag={marker}]")
            # It waits out the cool-down (checked below against V1's own record).
            done = wait_terminal(api, healthy["task_id"], timeout=20)
            assert admin(fragile, "GET", "/breaker").json()["state"] == "closed"
    assert done["state"] == "succeeded" and done["attempts"] == 1
    assert simulator.requests(tag=marker)[0]["started_at"] >= opened_at + 3


def _seconds(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp).timestamp()
