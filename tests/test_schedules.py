"""Recurring schedules (`/v1/schedules`): each firing is one normal task, exactly once per
due time with two maintenance processes, under the tenant's limits; schedules survive a
restart and the loss of their Redis index; a tenant sees only its own, up to its limit."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord.live import LiveStore
from taskrecord.schedules import iso
from taskrecord.settings import Settings, get_settings
from taskrecord.store.db import create_store_engine
from taskrecord.store.schedules import ScheduleStore
from taskrecord.store.schedules import stamp as store_stamp
from tasks.schedule_sweep import ScheduleSweep
from tests.harness import OTHER_API_KEY, System, new_system, wait_terminal, wait_until
from v1sim.process import SimulatorProcess

EVERY_SECOND = "* * * * * *"  # six fields: seconds first
YEARLY = "0 0 1 1 *"
SLOW_TENANT = {"beta": {"rate_per_second": 0.001, "burst": 1}}  # one submit, then refusals
LIMIT = 20  # TENANT_MAX_SCHEDULES here


@pytest.fixture(scope="module")
def sched(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    """Second-level schedules allowed (SCHEDULE_MIN_INTERVAL=1), LIMIT per tenant, and two
    maintenance processes racing for every due time."""
    with new_system(valkey, simulator.url, tmp_path_factory.mktemp("schedules"),
                    SCHEDULE_MIN_INTERVAL="1", TENANT_MAX_SCHEDULES=str(LIMIT),
                    TENANTS=json.dumps(SLOW_TENANT)) as sys_:  # fmt: skip
        sys_.start_gateway()
        sys_.start_worker()
        start_two_maintenances(sys_)
        yield sys_


def start_two_maintenances(sys_: System) -> None:
    before = sys_.workdir.joinpath("maintenance.log")
    seen = before.read_text().count("maintenance running") if before.exists() else 0
    first, second = sys_.start_maintenance(), sys_.start_maintenance()
    wait_until(lambda: first.log().count("maintenance running") >= seen + 2, 30,
               what="both maintenance processes running")  # fmt: skip
    assert first.alive() and second.alive() and first.pid != second.pid


def stop_maintenances(sys_: System) -> None:
    for proc in sys_.processes:
        if proc.name.startswith("maintenance"):
            proc.stop()


@pytest.fixture
def alpha(sched: System) -> Iterator[httpx.Client]:
    with sched.client() as client:
        yield client
    delete_all(sched)


@pytest.fixture
def beta(sched: System) -> Iterator[httpx.Client]:
    with sched.client(OTHER_API_KEY) as client:
        yield client


def delete_all(sys_: System) -> None:
    for key in (None, OTHER_API_KEY):
        with sys_.client(key) if key else sys_.client() as client:
            for item in client.get("/v1/schedules").json()["schedules"]:
                client.delete(f"/v1/schedules/{item['id']}")


def create(client: httpx.Client, cron: str, **fields: Any) -> dict[str, Any]:
    body = {"cron": cron, "task": {"message": "scheduled run", "estimated_seconds": 1}, **fields}
    response = client.post("/v1/schedules", json=body)
    assert response.status_code == 201, response.text
    assert response.headers["location"] == f"/v1/schedules/{response.json()['id']}"
    created: dict[str, Any] = response.json()
    return created


def schedule(client: httpx.Client, schedule_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/schedules/{schedule_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def wait_runs(client: httpx.Client, schedule_id: str, runs: int, timeout: float = 60) -> None:
    wait_until(lambda: schedule(client, schedule_id)["runs"] >= runs, timeout, 0.2,
               f"schedule {schedule_id} to make {runs} tasks")  # fmt: skip


def fired_tasks(sys_: System) -> dict[str, tuple[str, str]]:
    """Task id -> (schedule id, due time) of every live task a schedule made (read from
    Redis: no write-behind lag)."""
    client = redis.Redis.from_url(sys_.redis_url)
    found = {}
    for key in client.scan_iter("v2:task:*", count=1000):
        raw = client.hget(key, "metadata")
        metadata = json.loads(raw) if raw else {}
        if "schedule_id" in metadata:
            found[key.decode().rsplit(":", 1)[1]] = (
                metadata["schedule_id"],
                metadata["scheduled_for"],
            )
    client.close()
    return found


def stamp(iso_time: str) -> float:
    return datetime.fromisoformat(iso_time).timestamp()


def test_each_due_time_makes_one_task_with_two_maintenance_processes(
    sched: System, alpha: httpx.Client
) -> None:
    """LIMIT schedules firing every second: both processes find the same due entries every
    tick, so without the claim and the per-due-time task id some would fire twice."""
    created = [create(alpha, EVERY_SECOND, name=f"every second {i}") for i in range(LIMIT)]
    ids = [c["id"] for c in created]
    assert all(0 < stamp(c["next_run"]) - stamp(c["created_at"]) <= 1 for c in created)
    for sid in ids:
        wait_runs(alpha, sid, 3)
    shown = [schedule(alpha, sid) for sid in ids]
    for sid in ids:
        assert alpha.delete(f"/v1/schedules/{sid}").status_code == 204
    fired = fired_tasks(sched)
    twice = [(sid, due) for (sid, due), n in Counter(fired.values()).items() if n > 1]
    assert twice == []  # no due time of any schedule made two tasks
    for item in shown:
        mine = [due for sid, due in fired.values() if sid == item["id"]]
        assert len(mine) >= item["runs"] >= 3
        assert all(datetime.fromisoformat(due).microsecond == 0 for due in mine)
    # A firing is a normal task: queued, run by a worker, its metadata says who made it.
    last = wait_terminal(alpha, shown[0]["last_task_id"])
    assert last["state"] == "succeeded" and last["queue"] == "short"
    assert last["metadata"] == {
        "schedule_id": ids[0],
        "scheduled_for": shown[0]["last_run"].replace("+00:00", "Z"),
    }
    # Deleted: out of the due index and unknown to the API, so they cannot fire again.
    client = redis.Redis.from_url(sched.redis_url)
    assert client.zcard("v2:schedules-due") == 0
    client.close()
    assert alpha.get(f"/v1/schedules/{ids[0]}").status_code == 404


def test_schedules_survive_a_restart_and_the_loss_of_their_redis_index(
    sched: System, alpha: httpx.Client
) -> None:
    sid = create(alpha, EVERY_SECOND)["id"]
    wait_runs(alpha, sid, 1)
    stop_maintenances(sched)
    assert sched.gateway is not None
    sched.gateway.stop()
    client = redis.Redis.from_url(sched.redis_url)
    client.delete("v2:schedules-due")  # as if Redis had lost it
    client.close()
    sched.start_gateway()
    runs = schedule(alpha, sid)["runs"]  # read from the SQL store
    assert sid in [s["id"] for s in alpha.get("/v1/schedules").json()["schedules"]]
    start_two_maintenances(sched)
    wait_runs(alpha, sid, runs + 2)  # re-indexed from SQL, firing again
    due_times = Counter(due for owner, due in fired_tasks(sched).values() if owner == sid)
    assert max(due_times.values()) == 1


def test_a_due_time_whose_instance_died_after_making_its_task_gets_no_second_one(
    sched: System, alpha: httpx.Client
) -> None:
    """The crash the claim cannot cover: an instance made the due time's task, then died
    before recording the firing; the next instance to fire that due time must find it."""
    sid = create(alpha, EVERY_SECOND)["id"]
    wait_runs(alpha, sid, 1)
    stop_maintenances(sched)
    settings = get_settings(**{name.lower(): value for name, value in sched.env().items()
                               if name.lower() in Settings.model_fields})  # fmt: skip
    client = redis.Redis.from_url(sched.redis_url)
    store = ScheduleStore(create_store_engine(settings.database_url))
    row = store.get(sid)
    assert row is not None
    due = store_stamp(row.next_run_at)
    wait_until(lambda: time.time() > due, 10, what="the schedule to be due")
    made, error = ScheduleSweep(settings, LiveStore(client, settings), store).make_task(row, due)
    assert made is not None and error is None
    runs = schedule(alpha, sid)["runs"]
    start_two_maintenances(sched)
    wait_runs(alpha, sid, runs + 2)
    client.close()
    store.engine.dispose()
    for_due = [task for task, mark in fired_tasks(sched).items() if mark == (sid, iso(due))]
    assert for_due == [made]


def test_a_firing_is_held_to_the_tenants_limits(beta: httpx.Client, sched: System) -> None:
    """beta may submit once, then its rate limit refuses: the schedule shows why."""
    sid = create(beta, EVERY_SECOND)["id"]
    try:
        wait_until(lambda: (schedule(beta, sid)["last_error"] or {}).get("type") == "rate_limited",
                   60, 0.2, "a firing refused by the rate limit")  # fmt: skip
        shown = schedule(beta, sid)
        assert shown["runs"] == 1 and shown["last_task_id"] is not None
        assert "rate limit" in shown["last_error"]["message"]
        assert [owner for owner, _ in fired_tasks(sched).values()].count(sid) == 1
    finally:
        beta.delete(f"/v1/schedules/{sid}")


def test_another_tenants_schedule_is_a_404(alpha: httpx.Client, beta: httpx.Client) -> None:
    created = create(alpha, YEARLY, timezone="Asia/Kolkata", name="new year")
    sid = created["id"]
    # Midnight on 1 January in India is 18:30 UTC on 31 December.
    assert created["next_run"].endswith("-12-31T18:30:00Z")
    assert created["task"] == {"message": "scheduled run", "estimated_seconds": 1}
    assert (created["runs"], created["last_run"], created["last_task_id"]) == (0, None, None)
    assert beta.get(f"/v1/schedules/{sid}").status_code == 404
    refused = beta.delete(f"/v1/schedules/{sid}")
    assert refused.status_code == 404 and refused.json()["error"]["type"] == "not_found"
    assert sid not in [s["id"] for s in beta.get("/v1/schedules").json()["schedules"]]
    listed = alpha.get("/v1/schedules").json()["schedules"]
    assert [(s["id"], s["name"], s["cron"]) for s in listed] == [(sid, "new year", YEARLY)]
    assert "task" not in listed[0] and listed[0]["next_run"] == created["next_run"]
    assert schedule(alpha, sid)["timezone"] == "Asia/Kolkata"
    assert alpha.delete(f"/v1/schedules/{sid}").status_code == 204
    assert alpha.get(f"/v1/schedules/{sid}").status_code == 404
    assert alpha.delete(f"/v1/schedules/{sid}").status_code == 404
    assert alpha.get("/v1/schedules/not-a-uuid").status_code == 404


def test_a_tenant_has_at_most_tenant_max_schedules(alpha: httpx.Client, beta: httpx.Client) -> None:
    ids = [create(alpha, YEARLY)["id"] for _ in range(LIMIT)]
    refused = alpha.post("/v1/schedules", json={"cron": YEARLY, "task": {"message": "one more"}})
    assert refused.status_code == 409
    assert refused.json()["error"]["type"] == "schedule_limit_reached"
    assert f"has {LIMIT} schedules" in refused.json()["error"]["message"]
    assert len(alpha.get("/v1/schedules").json()["schedules"]) == LIMIT  # nothing half-made
    create(beta, YEARLY)  # another tenant's own count
    assert alpha.delete(f"/v1/schedules/{ids[0]}").status_code == 204
    create(alpha, YEARLY)


BASE = {"cron": "0 9 * * mon-fri", "timezone": "Europe/Berlin", "task": {"message": "digest"}}


@pytest.mark.parametrize(
    ("change", "status", "kind", "words"),
    [
        ({"cron": "* * * *"}, 422, "invalid_cron", "cron: has 4 fields"),
        ({"cron": "61 * * * *"}, 422, "invalid_cron", "out of range"),
        ({"cron": "@reboot"}, 422, "invalid_cron", "unknown nickname"),
        ({"timezone": "Mars/Olympus"}, 422, "unknown_timezone", "'Mars/Olympus' is not an IANA"),
        ({"cron": EVERY_SECOND}, 422, "schedule_too_frequent", "1 s apart; the minimum is 60 s"),
        ({"task": {"message": " "}}, 422, "invalid_request", "message is empty"),
        ({"task": {"message": "x", "priority": 10}}, 422, "priority_not_allowed", "maximum of 8"),
        ({"task": {"message": "x", "metadata": {"schedule_id": "mine"}}}, 422,
         "invalid_request", "'schedule_id' is set by the schedule"),
        ({"task": {"message": "x", "metadata": {f"k{i}": i for i in range(31)}}}, 422,
         "invalid_request", "once the schedule's keys"),
        ({"task": {"message": "x", "webhook_url": "http://127.0.0.1:9/hook"}}, 422,
         "invalid_webhook_url", "task.webhook_url"),
        ({"task": {"message": "x" * 100_001}}, 413, "message_too_large", "limit is 100000"),
        ({"task": {"message": "x", "session_id": "s", "if_busy": "reject"}}, 422,
         "invalid_request",
         "task.if_busy: not supported in a schedule"),
        ({"every": "day"}, 422, "invalid_request", "every"),
    ],
)  # fmt: skip
def test_a_bad_schedule_is_refused_naming_the_problem(
    system: System, change: dict[str, Any], status: int, kind: str, words: str
) -> None:
    """Default settings (SCHEDULE_MIN_INTERVAL 60 s); beta may use priorities up to 8."""
    with system.client(OTHER_API_KEY) as beta:
        before = beta.get("/v1/schedules").json()["schedules"]
        response = beta.post("/v1/schedules", json={**BASE, **change})
        assert beta.get("/v1/schedules").json()["schedules"] == before  # nothing stored
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == kind and words in error["message"], error
