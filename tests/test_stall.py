"""Stall detection: a run V1 sends no output for STALL_SECONDS ends `failed` / `stalled`,
its V1 call closed and its partial output kept; steady output however long is no stall.

A system of its own with STALL_SECONDS=2 (the shared one keeps the 600 s default).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from deploy.embedded_valkey import EmbeddedValkey
from tests.harness import System, new_system, submit, tag, wait_terminal, wait_until
from v1sim.process import SimulatorProcess

STALL = 2.0


@pytest.fixture(scope="module")
def stall_system(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    system = new_system(
        valkey, simulator.url, tmp_path_factory.mktemp("stall"), STALL_SECONDS=str(STALL)
    )
    try:
        system.start_gateway()
        system.start_worker()
        yield system
    finally:
        system.stop()


def v1_calls(simulator: SimulatorProcess, marker: str, count: int) -> list[dict[str, object]]:
    """The simulator's records of this test's calls, once `count` of them have ended."""

    def ended() -> list[dict[str, object]] | None:
        records = simulator.requests(tag=marker)
        done = len(records) == count and all(r.get("ended_at") for r in records)
        return records if done else None

    found: list[dict[str, object]] = wait_until(ended, 15, 0.2, f"{count} V1 call(s) ended")
    return found


def test_a_run_held_after_the_role_chunk_ends_stalled_and_closes_its_call(
    stall_system: System, simulator: SimulatorProcess
) -> None:
    """V1 answers 200 and its role chunk, then nothing: the role chunk is no progress."""
    marker = tag()
    started = time.monotonic()
    with stall_system.client() as api:
        task = submit(api, f"hold on [sim:delay=60] [sim:tag={marker}]")
        done = wait_terminal(api, task["task_id"], timeout=30)
    took = time.monotonic() - started
    assert done["state"] == "failed", done
    assert done["error"]["type"] == "stalled"
    assert "STALL_SECONDS" in done["error"]["message"]
    assert STALL <= took < 20, took  # the stall ended it, not the 300 s tier limit
    # One call (no automatic retry), and V1 saw it closed (which aborts the run).
    [call] = v1_calls(simulator, marker, 1)
    assert call["disconnected"] is True


def test_a_stream_that_stops_midway_keeps_its_partial_output(
    stall_system: System, simulator: SimulatorProcess
) -> None:
    marker = tag()
    with stall_system.client() as api:
        task = submit(api, f"go quiet [sim:chunks=3] [sim:chunk_delay=60] [sim:tag={marker}]")
        done = wait_terminal(api, task["task_id"], timeout=30)
    assert done["state"] == "failed" and done["error"]["type"] == "stalled", done
    assert done["partial"] == "tok0 "
    v1_calls(simulator, marker, 1)


def test_steady_output_for_longer_than_stall_seconds_is_no_stall(
    stall_system: System, simulator: SimulatorProcess
) -> None:
    """Ten deltas half a second apart: 4.5 s in all, never 2 s without output."""
    marker = tag()
    with stall_system.client() as api:
        task = submit(api, f"steady [sim:chunks=10] [sim:chunk_delay=0.5] [sim:tag={marker}]")
        done = wait_terminal(api, task["task_id"], timeout=30)
    assert done["state"] == "succeeded", done
    assert done["result"]["content"] == "".join(f"tok{i} " for i in range(10))


def test_a_stalled_task_is_retried_only_by_the_user(
    stall_system: System, simulator: SimulatorProcess
) -> None:
    marker = tag()
    with stall_system.client() as api:
        task = submit(api, f"retry me [sim:delay=60] [sim:tag={marker}]")
        assert wait_terminal(api, task["task_id"], timeout=30)["error"]["type"] == "stalled"
        v1_calls(simulator, marker, 1)  # nothing retried it by itself
        retried = api.post(f"/v1/tasks/{task['task_id']}/retry")
        assert retried.status_code == 202, retried.text
        wait_until(lambda: len(simulator.requests(tag=marker)) == 2, 15, 0.2, "the retry ran")
        again = wait_terminal(api, task["task_id"], timeout=30)
    assert again["attempts"] == 2
    assert again["state"] == "failed" and again["error"]["type"] == "stalled"
    v1_calls(simulator, marker, 2)
