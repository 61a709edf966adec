"""Workers yield the CPU to the gateway where both share a machine (WORKER_NICE, default
19): a worker process runs at that niceness, the gateway at its parent's, and the worker
still runs tasks. A worker leading its own session (as the harness starts it) also nices
its session's autogroup: Linux shares the CPU between autogroups before niceness counts,
so without it a niced worker in a session of its own competes with the gateway as an equal.

(The rest of the suite runs workers at WORKER_NICE=0: see tests/conftest.py.)
"""

from __future__ import annotations

import os
from pathlib import Path

from deploy.embedded_valkey import EmbeddedValkey
from tests.harness import new_system, running_system, submit, wait_terminal
from v1sim.process import SimulatorProcess

NICE = 19


def autogroup_nice(pid: int) -> int | None:
    """The niceness of the process's autogroup; None where the kernel has no autogroups or
    the process is in none (the kernel prints nothing for the root group: a session that
    never called setsid since boot, as a container's first process may be)."""
    try:
        # "/autogroup-85 nice 0"
        fields = Path(f"/proc/{pid}/autogroup").read_text().split()
    except OSError:
        return None
    return int(fields[-1]) if fields else None


def test_the_worker_is_niced_and_the_gateway_is_not(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    system = new_system(valkey, simulator.url, tmp_path, WORKER_NICE=str(NICE))
    with running_system(system):
        system.start_gateway()
        worker = system.start_worker()
        assert system.gateway is not None
        with system.client() as api:
            task = submit(api, "niced worker [sim:chunks=1]")
            # The worker took its niceness at start, before its first task.
            assert wait_terminal(api, task["task_id"])["state"] == "succeeded"
        assert os.getpriority(os.PRIO_PROCESS, worker.pid) == max(NICE, ours)
        assert os.getpriority(os.PRIO_PROCESS, system.gateway.pid) == ours
        assert os.getsid(worker.pid) == worker.pid  # the harness gives it a session
        if autogroup_nice(worker.pid) is not None:
            assert autogroup_nice(worker.pid) == NICE
            # The gateway is not niced: leading a session of its own, it is in a fresh
            # autogroup (which Linux starts at nice 0), otherwise in ours.
            if os.getsid(system.gateway.pid) == system.gateway.pid:
                assert autogroup_nice(system.gateway.pid) == 0
            else:
                assert autogroup_nice(system.gateway.pid) == autogroup_nice(os.getpid())
