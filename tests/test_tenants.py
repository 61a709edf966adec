"""Tenants share V1 by the rules in `taskrecord/tenants.py`: quotas refuse one tenant while
another is served, a flood does not hold back another tenant's new work, and a tenant's
own cap on concurrent runs holds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from tests.harness import OTHER_API_KEY, System, new_system, submit, tag, wait_terminal
from v1sim.process import SimulatorProcess


def most_at_once(records: list[dict[str, Any]]) -> int:
    """The largest number of these V1 calls that ran at the same moment."""
    edges = sorted(
        [(r["admitted_at"], 1) for r in records] + [(r["ended_at"], -1) for r in records]
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


@pytest.fixture
def quotas(valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path: Path) -> Iterator[System]:
    tenants = {"alpha": {"max_queued": 3}, "beta": {"rate_per_second": 0.5, "burst": 2}}
    with new_system(valkey, simulator.url, tmp_path, TENANTS=json.dumps(tenants),
                    TENANT_RATE_PER_SECOND="100") as sys_:  # fmt: skip
        sys_.start_gateway()  # no worker yet: what is accepted stays unfinished
        yield sys_


def test_a_tenant_over_its_quota_gets_429_while_another_is_served(quotas: System) -> None:
    with quotas.client() as alpha, quotas.client(OTHER_API_KEY) as beta:
        accepted = [submit(alpha, f"a{i}")["task_id"] for i in range(3)]
        refused = alpha.post("/v1/tasks", json={"message": "one too many"},
                             headers={"Idempotency-Key": "over-quota"})  # fmt: skip
        served = beta.post("/v1/tasks", json={"message": "beta is served"})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert refused.json()["error"]["type"] == "tenant_queue_full"
        assert "3" in refused.json()["error"]["message"]
        assert served.status_code == 202
        # Nothing half-accepted: no record, no queue message, no idempotency key left.
        client = redis.Redis.from_url(quotas.redis_url)
        depth = sum(client.llen(q) for q in ("priority", "short", "long"))
        assert depth == 4
        assert client.zcard("v2:tenant-live:alpha") == 3
        assert not list(client.scan_iter("v2:idem:alpha:*"))
        client.close()
        quotas.start_worker()
        assert [wait_terminal(alpha, t)["state"] for t in accepted] == ["succeeded"] * 3
        assert alpha.post("/v1/tasks", json={"message": "room again"}).status_code == 202


def test_a_tenant_over_its_rate_gets_429_with_retry_after(quotas: System) -> None:
    with quotas.client(OTHER_API_KEY) as beta, quotas.client() as alpha:
        statuses = [beta.post("/v1/tasks", json={"message": f"b{i}"}) for i in range(3)]
        other = alpha.post("/v1/tasks", json={"message": "alpha is not limited"})
    assert [r.status_code for r in statuses] == [202, 202, 429]
    assert statuses[2].json()["error"]["type"] == "rate_limited"
    assert 1 <= int(statuses[2].headers["retry-after"]) <= 2
    assert other.status_code == 202


def run_flood(
    sys_: System, simulator: SimulatorProcess, marker: str, flood: int, late: int, delay: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """alpha submits `flood` calls of `delay` s, then beta `late` ones; all must succeed.
    Returns V1's records of alpha's and of beta's calls."""
    directive = f"[sim:delay={delay}]"
    with sys_.client() as alpha, sys_.client(OTHER_API_KEY) as beta:
        ids = [(alpha, submit(alpha, f"flood {i} {directive} [sim:tag={marker}-a]")["task_id"])
               for i in range(flood)]  # fmt: skip
        ids += [(beta, submit(beta, f"late {i} {directive} [sim:tag={marker}-b]")["task_id"])
                for i in range(late)]  # fmt: skip
        states = {wait_terminal(api, task_id, timeout=60)["state"] for api, task_id in ids}
    assert states == {"succeeded"}
    return simulator.requests(tag=f"{marker}-a"), simulator.requests(tag=f"{marker}-b")


def test_a_flood_does_not_hold_back_another_tenants_new_work(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    """Two V1 slots; alpha floods with 12 one-second calls, then beta submits 2. By fair
    share beta starts within about one slot turnover; FIFO would start it after ~6 s."""
    marker = tag()
    with new_system(valkey, simulator.url, tmp_path, V1_MAX_CONCURRENCY="2") as sys_:
        sys_.start_gateway()
        sys_.start_worker()
        alpha_calls, beta_calls = run_flood(sys_, simulator, marker, flood=12, late=2, delay=1)
    first_beta = min(r["admitted_at"] for r in beta_calls)
    submitted = min(r["started_at"] for r in alpha_calls)
    assert first_beta - submitted < 2.5
    assert sum(r["admitted_at"] > first_beta for r in alpha_calls) >= 8


def test_a_tenant_never_runs_more_than_its_cap(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    marker = tag()
    tenants = json.dumps({"alpha": {"max_running": 1}})
    with new_system(valkey, simulator.url, tmp_path, V1_MAX_CONCURRENCY="3",
                    TENANTS=tenants) as sys_:  # fmt: skip
        sys_.start_gateway()
        sys_.start_worker()
        alpha_calls, beta_calls = run_flood(sys_, simulator, marker, flood=4, late=1, delay=0.5)
    assert most_at_once(alpha_calls) == 1  # its cap, though 3 slots exist
    assert most_at_once(alpha_calls + beta_calls) == 2  # beta ran beside it
