"""A run that ends while Redis is away (a restart, a Sentinel failover) waits for Redis and
records its end there, instead of losing it: before, the finish's error ended the run, the
task stayed `running` until its lease ran out and then failed `worker_lost` (or ran V1
again), although V1 had answered. (The cluster's Sentinel failover test logged such
finishes.) One system of its own on a Valkey of its own, which this test kills."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.embedded_valkey import EmbeddedValkey
from tests.harness import new_system, submit, wait_for_state, wait_terminal, wait_until
from v1sim.process import SimulatorProcess


@pytest.fixture
def own_valkey(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path / "valkey")
    server.start()
    yield server
    server.stop()


def test_a_run_ending_while_valkey_is_down_is_recorded_once_it_is_back(
    own_valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    # The lease outlasts the outage: the end is still this attempt's to record.
    with new_system(own_valkey, simulator.url, tmp_path, LEASE_SECONDS="60") as system:
        system.start_gateway()
        worker = system.start_worker()
        with system.client() as api:
            task = submit(api, "ends during an outage [sim:delay=3]")
            task_id = task["task_id"]
            wait_for_state(api, task_id, "running", 15)
            assert own_valkey.process is not None
            own_valkey.process.kill()  # SIGKILL while V1 is still answering
            own_valkey.process.wait(10)
            wait_until(lambda: "Redis unreachable at finish" in worker.log(), 30, 0.2,
                       "the worker's finish to find Redis away")  # fmt: skip
            restarted = EmbeddedValkey(own_valkey.data_dir, port=own_valkey.port)
            restarted.start()
            own_valkey.process = restarted.process  # the fixture stops this one
            end = wait_terminal(api, task_id, timeout=60)
    assert end["state"] == "succeeded", end
    assert end["attempts"] == 1 and end["result"]["content"], end
