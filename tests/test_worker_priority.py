"""Workers yield the CPU to the gateway where both share a machine (WORKER_NICE, default
19): a worker process runs at that niceness, the gateway at its parent's, and the worker
still runs tasks."""

from __future__ import annotations

import os

from taskrecord.settings import get_settings
from tests.harness import System, submit, wait_terminal


def test_the_worker_is_niced_and_the_gateway_is_not(system: System) -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    workers = [p for p in system.processes if p.name.startswith("worker-")]
    assert workers and system.gateway is not None
    for worker in workers:
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) == max(get_settings().worker_nice, ours)
    assert os.getpriority(os.PRIO_PROCESS, system.gateway.pid) == ours
    with system.client() as api:
        task = submit(api, "niced worker [sim:chunks=1]")
        assert wait_terminal(api, task["task_id"])["state"] == "succeeded"
