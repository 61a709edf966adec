"""Re-runs go ahead of new work: a task re-queued after its worker died, or a retry whose
delay ran out, starts before the backlog of new tasks waiting in its queue (issue 13).

One worker of concurrency 1 on `short`, so the backlog really waits in the broker list and
the order in which tasks start is the order in which their messages leave it. The order is
read from the tasks' own `started` events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from taskrecord import keys
from tests.harness import System, new_system, submit, tag, wait_for_state, wait_terminal, wait_until
from v1sim.process import SimulatorProcess

BACKLOG = 4


@pytest.fixture(scope="module")
def rerun_system(
    valkey: object, simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    workdir: Path = tmp_path_factory.mktemp("rerun-first")
    with new_system(valkey, simulator.url, workdir, LEASE_SECONDS="2") as system:
        system.start_gateway()
        system.start_maintenance()
        yield system


def starts(system: System, task_id: str) -> list[float]:
    """When each attempt of the task started, from its event log."""
    client = redis.Redis.from_url(system.redis_url)
    try:
        entries = client.xrange(keys.events_key(task_id)) or []
    finally:
        client.close()
    events = [json.loads((fields or {})[b"e"]) for _id, fields in entries]
    return [float(e["ts"]) for e in events if e["type"] == "started"]


def submit_backlog(api: httpx.Client, marker: str) -> list[str]:
    return [submit(api, f"new work {i} [sim:delay=1] [sim:tag={marker}-b{i}]",
                   estimated_seconds=1)["task_id"] for i in range(BACKLOG)]  # fmt: skip


def test_a_task_recovered_from_a_dead_worker_starts_before_the_backlog(
    rerun_system: System, simulator: SimulatorProcess
) -> None:
    marker = tag()
    first = rerun_system.start_worker("short", concurrency=1)
    with rerun_system.client() as api:
        cut = submit(api, f"cut [sim:delay=30] [sim:tag={marker}-cut]", estimated_seconds=1)
        wait_until(lambda: simulator.requests(tag=f"{marker}-cut"), 30, 0.1, "its V1 call")
        backlog = submit_backlog(api, marker)
        first.kill()  # mid-call, before V1 sent any text: the task is re-run
        wait_until(lambda: len(starts(rerun_system, cut["task_id"])) == 1
                   and api.get(f"/v1/tasks/{cut['task_id']}").json()["state"] == "queued",
                   30, 0.1, "its lease to run out and maintenance to re-queue it")  # fmt: skip
        second = rerun_system.start_worker("short", concurrency=1)
        # The re-run itself would take 30 s: its start is all this test needs.
        wait_until(lambda: len(starts(rerun_system, cut["task_id"])) == 2, 30, 0.1, "re-run")
        rerun_start = starts(rerun_system, cut["task_id"])[1]
        api.post(f"/v1/tasks/{cut['task_id']}/cancel")
        for task_id in backlog:
            assert wait_terminal(api, task_id)["state"] == "succeeded"
        backlog_starts = [starts(rerun_system, t)[0] for t in backlog]
    second.stop()
    assert rerun_start < min(backlog_starts), (rerun_start, backlog_starts)


def test_a_due_retry_starts_before_the_rest_of_the_backlog(
    rerun_system: System, simulator: SimulatorProcess
) -> None:
    """The failing task is first out; its retry delay (at most RETRY_BASE_DELAY, 0.2 s) runs
    out while the first backlog task starts or runs (1 s): the retry must come next."""
    marker = tag()
    with rerun_system.client() as api:
        flaky = submit(api, f"flaky [sim:fail=500x1] [sim:tag={marker}-flaky]",
                       estimated_seconds=1)["task_id"]  # fmt: skip
        backlog = submit_backlog(api, marker)
        worker = rerun_system.start_worker("short", concurrency=1)
        done = wait_terminal(api, flaky, 60)
        assert done["state"] == "succeeded" and done["attempts"] == 2, done
        for task_id in backlog:
            wait_for_state(api, task_id, "succeeded", 60)
        flaky_starts = starts(rerun_system, flaky)
        backlog_starts = sorted(starts(rerun_system, t)[0] for t in backlog)
    worker.stop()
    assert [r["status"] for r in simulator.requests(tag=f"{marker}-flaky")] == [500, 200]
    # Before: [flaky, b0, b1, b2, b3, flaky]; now the retry overtakes at least b1..b3.
    assert flaky_starts[0] < backlog_starts[0], (flaky_starts, backlog_starts)
    assert flaky_starts[1] < backlog_starts[1], (flaky_starts, backlog_starts)
