"""Scheduled runs: `run_at` / `delay_seconds` on submit. The task waits in Redis (the
`dispatch-due` set, not the broker queue nor a worker) and maintenance publishes it when it
is due; cancel, pause and resume work on it meanwhile, and its absolute limit counts from
when it is due."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from tests.harness import System, new_system, submit, tag, wait_terminal
from v1sim.process import SimulatorProcess


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def in_broker(client: redis.Redis, task_id: str) -> bool:
    return any(task_id.encode() in m for q in ("priority", "short", "long")
               for m in client.lrange(q, 0, -1))  # fmt: skip


def refused(api: httpx.Client, **fields: Any) -> str:
    reply = api.post("/v1/tasks", json={"message": "x", **fields})
    assert reply.status_code == 422, reply.text
    return str(reply.json()["error"]["message"])


def test_schedules_out_of_bounds_or_contradictory_are_422(system: System) -> None:
    now = time.time()
    with system.client() as api:
        assert "time zone" in refused(api, run_at="2030-01-01T00:00:00")
        assert "time zone" in refused(api, run_at=True)
        assert "in the past" in refused(api, run_at=now - 60)
        assert "ABSOLUTE_TIME_LIMIT" in refused(api, run_at=now + 8 * 86_400)
        assert "ABSOLUTE_TIME_LIMIT" in refused(api, delay_seconds=8 * 86_400)
        assert "at most one of" in refused(api, run_at=now + 60, delay_seconds=60)
        assert "cannot be combined" in refused(api, delay_seconds=60, session_id="s",
                                               if_busy="interrupt")  # fmt: skip
        # A few seconds in the past is "now" (clocks differ): accepted, not scheduled.
        late = submit(api, "now", run_at=now - 2)
        assert late["scheduled_for"] is None


def test_a_delayed_task_waits_in_redis_and_runs_when_due(
    system: System, simulator: SimulatorProcess, redis_client: redis.Redis
) -> None:
    marker = tag()
    with system.client() as api:
        task = submit(api, f"later [sim:tag={marker}]", delay_seconds=3)
        task_id, due = task["task_id"], seconds(task["scheduled_for"])
        assert task["state"] == "queued" and 2.5 < due - time.time() <= 3.0
        assert api.get(f"/v1/tasks/{task_id}").json()["scheduled_for"] == task["scheduled_for"]
        assert redis_client.zscore("v2:dispatch-due", task_id) == pytest.approx(due)
        assert not in_broker(redis_client, task_id)
        done = wait_terminal(api, task_id, timeout=30)
    assert done["state"] == "succeeded" and done["scheduled_for"] == task["scheduled_for"]
    (call,) = simulator.requests(tag=marker)
    # Published by maintenance within about a second of its time, never before it.
    assert due <= call["started_at"] < due + 2.0


def test_run_at_takes_iso_8601_with_a_zone_or_unix_seconds_and_cancel_ends_it_unrun(
    system: System, simulator: SimulatorProcess, redis_client: redis.Redis
) -> None:
    marker = tag()
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    zoned = when.astimezone(datetime.now().astimezone().tzinfo).isoformat()
    with system.client() as api:
        tasks = [submit(api, f"never [sim:tag={marker}]", run_at=at)
                 for at in (zoned, when.timestamp())]  # fmt: skip
        for task in tasks:
            assert seconds(task["scheduled_for"]) == when.timestamp()
            cancelled = api.post(f"/v1/tasks/{task['task_id']}/cancel")
            assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
            assert redis_client.zscore("v2:dispatch-due", task["task_id"]) is None
    assert simulator.requests(tag=marker) == []


def test_a_paused_scheduled_task_waits_past_its_time_until_resumed(
    system: System, simulator: SimulatorProcess
) -> None:
    early, held = tag(), tag()
    with system.client() as api:
        # Paused and resumed before its time: it still waits for its time.
        kept = submit(api, f"kept [sim:tag={early}]", delay_seconds=3)
        assert api.post(f"/v1/tasks/{kept['task_id']}/pause").json()["state"] == "paused"
        assert api.post(f"/v1/tasks/{kept['task_id']}/resume").json()["state"] == "queued"
        # Paused over its time: not run until resumed.
        paused = submit(api, f"held [sim:tag={held}]", delay_seconds=1)
        assert api.post(f"/v1/tasks/{paused['task_id']}/pause").json()["state"] == "paused"
        assert wait_terminal(api, kept["task_id"])["state"] == "succeeded"
        assert api.get(f"/v1/tasks/{paused['task_id']}").json()["state"] == "paused"
        assert simulator.requests(tag=held) == []
        resumed_at = time.time()
        api.post(f"/v1/tasks/{paused['task_id']}/resume")
        assert wait_terminal(api, paused["task_id"])["state"] == "succeeded"
    assert simulator.requests(tag=early)[0]["started_at"] >= seconds(kept["scheduled_for"])
    assert simulator.requests(tag=held)[0]["started_at"] >= resumed_at


def test_a_task_scheduled_for_later_does_not_hold_its_conversation(
    system: System, simulator: SimulatorProcess
) -> None:
    session, later, now_ = f"s-{tag()}", tag(), tag()
    with system.client() as api:
        scheduled = submit(api, f"later [sim:tag={later}]", session_id=session, delay_seconds=4)
        # Not busy for if_busy=reject either: a run scheduled for later is not part of it yet.
        current = submit(api, f"now [sim:tag={now_}]", session_id=session, if_busy="reject")
        assert wait_terminal(api, current["task_id"])["state"] == "succeeded"
        assert wait_terminal(api, scheduled["task_id"])["state"] == "succeeded"
    assert simulator.requests(tag=now_)[0]["ended_at"] < seconds(scheduled["scheduled_for"])


@pytest.fixture(scope="module")
def brief(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    """A system whose absolute limit is 6 s."""
    workdir = tmp_path_factory.mktemp("brief")
    with new_system(valkey, simulator.url, workdir, ABSOLUTE_TIME_LIMIT="6") as sys_:
        sys_.start_gateway()
        sys_.start_worker()
        sys_.start_maintenance()
        yield sys_


def test_a_scheduled_task_still_waiting_expires_an_absolute_limit_after_it_was_due(
    brief: System,
) -> None:
    with brief.client() as api:
        task = submit(api, "held", delay_seconds=4)
        assert api.post(f"/v1/tasks/{task['task_id']}/pause").json()["state"] == "paused"
        ended = wait_terminal(api, task["task_id"], timeout=20)
    assert ended["state"] == "timed_out"
    # Not 6 s after submission (maintenance checks every 0.25 s) but 6 s after its time.
    assert seconds(ended["finished_at"]) >= seconds(task["scheduled_for"]) + 6


def test_a_scheduled_run_gets_its_whole_absolute_limit_from_its_time(brief: System) -> None:
    with brief.client() as api:
        # Due at +4 s, runs about 3 s: past submission + 6 s, within due + 6 s.
        task = submit(api, "run [sim:chunks=30] [sim:chunk_delay=0.1]", delay_seconds=4)
        assert wait_terminal(api, task["task_id"], timeout=30)["state"] == "succeeded"
