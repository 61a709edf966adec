"""How each of V1's failure shapes ends a task (see v1-contract.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.embedded_valkey import EmbeddedValkey
from tests.harness import System, new_system, submit, tag, wait_terminal
from v1sim.process import SimulatorProcess


@pytest.mark.parametrize(
    ("directive", "error_type", "attempts"),
    [
        ("[sim:fail=401]", "v1_unauthorized", 1),
        ("[sim:fail=400]", "v1_bad_request", 1),
        ("[sim:fail=500]", "v1_server_error", 4),
        ("[sim:fail=408]", "v1_timeout", 4),
        ("[sim:error_after=0]", "v1_stream_error", 4),
    ],
)
def test_v1_failure_ends_task_with_a_named_error(
    system: System, simulator: SimulatorProcess, directive: str, error_type: str, attempts: int
) -> None:
    marker = tag()
    with system.client() as api:
        task = submit(api, f"boom {directive} [sim:tag={marker}]")
        done = wait_terminal(api, task["task_id"], timeout=60)
    assert done["state"] == "failed", done
    assert done["error"]["type"] == error_type
    assert done["attempts"] == attempts
    # Retryable failures were retried (capped), the others were not: V1 saw each attempt.
    assert len(simulator.requests(tag=marker)) == attempts


def test_error_chunk_after_output_fails_without_retry_and_keeps_partial(
    system: System, simulator: SimulatorProcess
) -> None:
    marker = tag()
    with system.client() as api:
        task = submit(api, f"x [sim:chunks=10] [sim:error_after=3] [sim:tag={marker}]")
        done = wait_terminal(api, task["task_id"])
    assert done["state"] == "failed"
    assert done["error"]["type"] == "v1_stream_error"
    assert done["partial"] == "tok0 tok1 tok2 "
    assert done["attempts"] == 1
    assert len(simulator.requests(tag=marker)) == 1


def test_transient_failures_are_retried_until_success(
    system: System, simulator: SimulatorProcess
) -> None:
    marker = tag()
    with system.client() as api:
        task = submit(api, f"flaky [sim:fail=503x2] [sim:chunks=2] [sim:tag={marker}]")
        done = wait_terminal(api, task["task_id"])
    assert done["state"] == "succeeded", done
    assert done["attempts"] == 3
    assert done["result"]["content"] == "tok0 tok1 "
    statuses = [r["status"] for r in simulator.requests(tag=marker)]
    assert statuses == [503, 503, 200]


def test_wrong_v1_token_fails_as_unauthorized(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    with new_system(valkey, simulator.url, tmp_path, V1_TOKEN="not-the-token") as bad:
        bad.start_gateway(ready_path="/healthz")
        bad.start_worker()
        with bad.client() as api:
            ready = api.get("/readyz")
            task = submit(api, "hello")
            done = wait_terminal(api, task["task_id"])
    # /readyz says why every task would fail, before any task has.
    assert ready.status_code == 503
    assert ready.json()["checks"]["v1"] == "error: unauthorized (V1 refuses V1_TOKEN)"
    assert {k: v for k, v in ready.json()["checks"].items() if k != "v1"} == {
        "redis": "ok", "sql": "ok", "broker": "ok"}  # fmt: skip
    assert done["state"] == "failed"
    assert done["error"] == {
        "type": "v1_unauthorized",
        "status": 401,
        "message": "unauthorized: Unauthorized",
    }


def test_unknown_agent_at_v1_fails_as_bad_request(system: System) -> None:
    with system.client() as api:
        task = submit(api, "who?", agent_id="ghost")
        done = wait_terminal(api, task["task_id"])
    assert done["state"] == "failed" and done["attempts"] == 1
    assert done["error"]["type"] == "v1_bad_request"
    assert "Unknown agent 'ghost'" in done["error"]["message"]
