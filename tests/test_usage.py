"""V1 usage per tenant per UTC day: the sums equal what the simulator reported, /metrics
exports them as counters, and a tenant over its daily token budget is refused until
midnight UTC while another tenant is served.

A system of its own (its own SQLite, so the sums are this module's tasks only), where
tenant beta has a budget of 30 tokens a day and alpha none.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord.settings import DEV_METRICS_TOKEN
from taskrecord.store.db import create_store_engine
from taskrecord.store.models import TaskRow
from taskrecord.store.repo import TaskStore
from tests.harness import OTHER_API_KEY, System, new_system, submit, tag, wait_terminal, wait_until
from v1sim.process import SimulatorProcess

BUDGET = 30


@pytest.fixture(scope="module")
def usage_system(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    system = new_system(
        valkey, simulator.url, tmp_path_factory.mktemp("usage"),
        TENANTS=json.dumps({"beta": {"daily_tokens": BUDGET}}),
    )  # fmt: skip
    try:
        system.start_gateway()
        system.start_worker()
        yield system
    finally:
        system.stop()


def simulator_usage(message: str, chunks: int) -> dict[str, int]:
    """What the simulator reports for a one-message call (v1sim/run.py `Run._usage`): a
    prompt token per whitespace-separated word of the input, a completion token per delta."""
    prompt = len(message.split())
    return {"prompt_tokens": prompt, "completion_tokens": chunks, "total_tokens": prompt + chunks}


def usage_of(api: httpx.Client, **params: str) -> dict[str, Any]:
    reply = api.get("/v1/usage", params=params)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def token_counters(system: System) -> dict[tuple[str, str], float]:
    reply = httpx.get(
        f"{system.url}/metrics", headers={"Authorization": f"Bearer {DEV_METRICS_TOKEN}"}
    )
    assert reply.status_code == 200
    found = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            if sample.name == "openclaw_tokens_total":
                found[(sample.labels["tenant"], sample.labels["kind"])] = sample.value
    return found


def test_usage_sums_equal_what_the_simulator_reported(
    usage_system: System, simulator: SimulatorProcess
) -> None:
    marker = tag()
    runs = [
        (f"count these words please [sim:chunks=3] [sim:tag={marker}]", 3),
        (f"a longer message with a few more words in it [sim:chunks=7] [sim:tag={marker}]", 7),
        (f"short [sim:chunks=1] [sim:tag={marker}]", 1),
    ]
    with usage_system.client() as api:
        tasks = [(submit(api, text)["task_id"], text, chunks) for text, chunks in runs]
        # A failed run reports no usage and counts nothing.
        failing = submit(api, f"refused [sim:fail=400] [sim:tag={marker}]")
        assert wait_terminal(api, failing["task_id"])["state"] == "failed"
        expected = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        for task_id, text, chunks in tasks:
            done = wait_terminal(api, task_id)
            assert done["state"] == "succeeded", done
            reported = simulator_usage(text, chunks)
            assert done["result"]["usage"] == reported
            expected = {kind: expected[kind] + reported[kind] for kind in expected}
        # The SQL usage row is written as each task's end is recorded: wait for the last.
        usage = wait_until(
            lambda: (u := usage_of(api))["total"]["tasks"] == len(runs) and u, 15, 0.2,
            "usage of every succeeded task",
        )  # fmt: skip
    assert usage["tenant"] == "alpha" and usage["daily_tokens"] is None
    assert usage["total"] == {"tasks": len(runs), **expected}
    assert usage["days"][-1]["date"] == datetime.now(UTC).date().isoformat()
    assert 1 <= len(usage["days"]) <= 2  # two only if the run crossed midnight UTC
    assert sum(day["total_tokens"] for day in usage["days"]) == expected["total_tokens"]
    assert len(simulator.requests(tag=marker)) == len(runs) + 1
    counters = token_counters(usage_system)
    assert counters[("alpha", "prompt")] == expected["prompt_tokens"]
    assert counters[("alpha", "completion")] == expected["completion_tokens"]
    assert counters[("alpha", "total")] == expected["total_tokens"]


def test_a_tenant_over_its_daily_tokens_is_refused_until_midnight_utc(
    usage_system: System,
) -> None:
    text = f"spend the budget [sim:chunks={BUDGET}]"
    with usage_system.client(OTHER_API_KEY) as beta, usage_system.client() as alpha:
        first = submit(beta, text)  # nothing used yet today
        assert wait_terminal(beta, first["task_id"])["state"] == "succeeded"
        used = simulator_usage(text, BUDGET)["total_tokens"]
        wait_until(lambda: usage_of(beta)["total"]["total_tokens"] == used, 15, 0.2, "usage")
        refused = beta.post("/v1/tasks", json={"message": "one more"})
        assert usage_of(beta)["daily_tokens"] == BUDGET
        served = alpha.post("/v1/tasks", json={"message": "alpha has no budget"})
    assert refused.status_code == 429, refused.text
    error = refused.json()["error"]
    assert error["type"] == "token_budget_exhausted"
    assert error["daily_tokens"] == BUDGET and error["used_tokens"] == used
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    assert abs(int(refused.headers["Retry-After"]) - (midnight - now).total_seconds()) < 30
    assert served.status_code == 202, served.text


def test_usage_range_is_checked_and_an_inverted_one_is_empty(usage_system: System) -> None:
    with usage_system.client() as api:
        inverted = usage_of(api, **{"from": "2030-01-02", "to": "2030-01-01"})
        bad = api.get("/v1/usage", params={"from": "2030-13-01"})
    assert inverted["days"] == [] and inverted["total"]["total_tokens"] == 0
    assert bad.status_code == 422
    assert bad.json()["error"]["type"] == "invalid_request" and "from" in bad.text


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskStore]:
    """The SQL store on each database the project supports (PostgreSQL: the suite's own)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'usage.db'}"
    else:
        url = request.getfixturevalue("postgres").url
    engine = create_store_engine(url)
    yield TaskStore(engine)
    engine.dispose()


def _row(tenant: str, state: str, **columns: Any) -> TaskRow:
    return TaskRow(
        id=str(uuid.uuid4()), tenant=tenant, state=state, queue="short", priority=5,
        estimated_seconds=5.0, estimate_source="heuristic", agent_id="main", session_id="s",
        request={"messages": []}, metadata_=None, timeout_seconds=None, attempts=1,
        created_at=datetime(2030, 5, 1, 23, 0, tzinfo=UTC), **columns,
    )  # fmt: skip


def test_a_success_counts_once_on_the_day_it_finished(store: TaskStore) -> None:
    """The worker's copy, then maintenance's or a second writer's copy of the same success:
    counted once, on the UTC day of `finished_at`; failures count nothing and are found by
    their error type."""
    tenant = f"u-{uuid.uuid4().hex[:8]}"
    usage = {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}
    task = _row(tenant, "running")
    store.upsert(task, "started")
    task.state, task.result = "succeeded", {"content": "ok", "usage": usage}
    task.finished_at = datetime(2030, 5, 2, 0, 30, tzinfo=UTC)
    store.upsert(task, "finished")
    store.upsert(task, "copied again")
    other = _row(
        tenant,
        "succeeded",
        finished_at=datetime(2030, 5, 2, 9, 0, tzinfo=UTC),
        result={"content": "", "usage": {"prompt_tokens": 1, "completion_tokens": 2}},
    )
    store.upsert(other, "finished")
    failed = _row(tenant, "failed", error={"type": "stalled", "message": "m"})
    store.upsert(failed, "failed")
    [day] = store.usage.days(tenant, date(2030, 5, 1), date(2030, 5, 3))
    assert (day.day, day.tasks) == (date(2030, 5, 2), 2)
    assert (day.prompt_tokens, day.completion_tokens, day.total_tokens) == (8, 7, 15)
    assert store.usage.tokens_on(tenant, date(2030, 5, 2)) == 15
    assert store.usage.totals()[tenant].total_tokens == 15
    assert [r.id for r in store.recent(tenant=tenant, state="failed", error_type="stalled")] == [
        failed.id
    ]
    assert store.recent(tenant=tenant, error_type="v1_timeout") == []


def test_one_batch_of_several_successes_of_a_tenant_counts_each_once(store: TaskStore) -> None:
    """A worker's batch (`upsert_many`, one transaction): several tasks of one tenant
    succeeding the same day, one of them written twice in the batch and once more in a
    later batch, and a failure. One multi-row statement may not touch a row twice
    (PostgreSQL), so the day's sums are added once per (tenant, day)."""
    tenant = f"u-{uuid.uuid4().hex[:8]}"
    finished = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)

    def success(tokens: int) -> TaskRow:
        usage = {"prompt_tokens": tokens, "completion_tokens": 1, "total_tokens": tokens + 1}
        return _row(tenant, "succeeded", finished_at=finished,
                    result={"content": "ok", "usage": usage})  # fmt: skip

    first, second, third = success(10), success(20), success(30)
    running = _row(tenant, "running")
    store.upsert_many([(running, "started"), (first, "finished"), (second, "finished"),
                       (first, "copied again"), (third, "finished")])  # fmt: skip
    store.upsert_many([(second, "copied again"), (_row(tenant, "failed"), "failed")])
    [day] = store.usage.days(tenant, date(2030, 6, 1), date(2030, 6, 1))
    assert (day.tasks, day.prompt_tokens, day.completion_tokens) == (3, 60, 3)
    assert day.total_tokens == 63
    assert [t.detail for t in store.transitions(first.id)] == ["finished", "copied again"]
    row = store.get(running.id)
    assert row is not None and row.state == "running"
