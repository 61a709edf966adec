"""End to end: submit -> route -> Celery worker -> V1 simulator -> stored result."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord import keys
from tests.harness import System, new_system, submit, tag, wait_terminal, wait_until
from v1sim.process import SimulatorProcess

QUEUES = ("priority", "short", "long")


@pytest.fixture(scope="module")
def per_queue(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    """A system with one worker per queue class (`-Q priority`, `-Q short`, `-Q long`), as
    `make run` has: the shared system's single worker consumes every queue."""
    with new_system(valkey, simulator.url, tmp_path_factory.mktemp("per-queue")) as system:
        system.start_gateway()
        with ThreadPoolExecutor(len(QUEUES)) as pool:  # started side by side: faster
            list(pool.map(lambda q: system.start_worker(queues=q, name=f"only-{q}"), QUEUES))
        yield system


def expected_text(chunks: int) -> str:
    return "".join(f"tok{i} " for i in range(chunks))


@pytest.mark.parametrize(
    ("fields", "queue"),
    [
        ({}, "short"),
        ({"estimated_seconds": 120}, "long"),
        ({"priority": 9}, "priority"),
        ({"priority": 9, "estimated_seconds": 120}, "priority"),
    ],
)
def test_task_runs_end_to_end_on_its_queue_class_worker(
    per_queue: System, simulator: SimulatorProcess, fields: dict[str, object], queue: str
) -> None:
    marker = tag()
    with per_queue.client() as api:
        created = submit(api, f"hello [sim:chunks=7] [sim:tag={marker}]", **fields)
        assert created["state"] == "queued"
        assert created["queue"] == queue
        done = wait_terminal(api, created["task_id"])
    assert done["state"] == "succeeded", done
    # Run by the worker of its own queue class, and only by it.
    client = redis.Redis.from_url(per_queue.redis_url)
    try:
        worker = client.hget(f"v2:task:{created['task_id']}", "worker")
    finally:
        client.close()
    assert worker is not None and worker.decode().startswith(f"only-{queue}@"), worker
    assert done["result"]["content"] == expected_text(7)
    assert done["result"]["finish_reason"] == "stop"
    assert done["attempts"] == 1
    assert done["started_at"] and done["finished_at"]
    requests = simulator.requests(tag=marker)
    assert len(requests) == 1 and requests[0]["agent"] == "main"


def test_submit_answers_with_routing_details(system: System) -> None:
    with system.client() as api:
        started = time.perf_counter()
        response = api.post("/v1/tasks", json={"message": "hi", "priority": 3})
        elapsed = time.perf_counter() - started
    assert response.status_code == 202
    body = response.json()
    assert response.headers["location"] == f"/v1/tasks/{body['task_id']}"
    assert body["priority"] == 3 and body["queue"] == "short"
    assert body["estimate_source"] in ("heuristic", "learned") and body["estimated_seconds"] > 0
    assert elapsed < 5  # sanity only; latency is measured in bench/, not here


def test_estimate_learns_from_finished_tasks(system: System, redis_client: redis.Redis) -> None:
    with system.client() as api:
        # Other tests of this shared system may have taught `coder` already: forget it, and
        # wait out the gateway's cache with tasks due in an hour (they teach nothing).
        redis_client.hdel(keys.ESTIMATES, "coder:n", "coder:mean")
        probes: list[dict[str, Any]] = []

        def heuristic() -> bool:
            probes.append(submit(api, "learn me", agent_id="coder", delay_seconds=3600))
            return bool(probes[-1]["estimate_source"] == "heuristic")

        wait_until(heuristic, 15, 0.5, "the heuristic estimate")
        for probe in probes:
            assert api.post(f"/v1/tasks/{probe['task_id']}/cancel").status_code == 200
        for i in range(5):
            task = submit(api, f"sample {i} [sim:delay=0.2]", agent_id="coder")
            assert wait_terminal(api, task["task_id"])["state"] == "succeeded"
        # Gateways refresh what they learnt every few seconds.
        learned = wait_until(
            lambda: (t := submit(api, "learn me", agent_id="coder"))["estimate_source"]
            == "learned" and t, 15, 0.5, "a learnt estimate")  # fmt: skip
    assert learned["estimate_source"] == "learned"
    assert 0.05 < learned["estimated_seconds"] < 5
