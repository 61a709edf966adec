"""The worker autoscaler (deploy/autoscaler.py) under a real supervisord, as `make run` runs it.

Real supervisord with the `short` pool's worker programs and the autoscaler as rendered by
deploy/programs.py (1..3 processes, a 6 s cooldown), real Celery workers, gateway,
maintenance and Valkey; the V1 simulator makes each task take seconds. A burst must grow
the pool above its minimum and the falling load shrink it back, with every task succeeded
on its first attempt (nothing lost, nothing cut and re-run) and every drained process
exited by itself (warm shutdown, exit 0), never killed.

The autoscaler plans 4 tasks per process while each worker runs 1 at a time: so when the
burst's three last (long) tasks run, one on each process, the load (3) wants one process
and the shrink down to it must drain processes that are each running a task. (An earlier
drain, while the burst's short tasks end, may find an idle process: the least busy goes.)
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import redis

from deploy.autoscaler import pool_configs, read_load, supervisor
from deploy.embedded_valkey import EmbeddedValkey
from deploy.endpoints import resolve_endpoints
from deploy.layout import Layout
from deploy.programs import AUTOSCALER, plan_programs
from deploy.supervisor_conf import render_supervisord_conf
from deploy.supervisor_process import Supervisord
from taskrecord.advertised import live_consumers
from taskrecord.keys import BREAKER, LEASES, PAUSED_QUEUES, task_key
from taskrecord.live import text
from taskrecord.settings import get_settings
from tests.harness import (
    ROOT,
    System,
    new_system,
    submit,
    wait_terminal,
    wait_until,
)
from v1sim.process import SimulatorProcess

MIN, MAX, PER_PROCESS = 1, 3, 4
WORKER_CONCURRENCY = 1
SCALING = {
    "WORKER_CONCURRENCY": str(PER_PROCESS),
    "AUTOSCALE_SHORT_MIN": str(MIN),
    "AUTOSCALE_SHORT_MAX": str(MAX),
    "AUTOSCALE_INTERVAL": "0.5",
    "AUTOSCALE_COOLDOWN": "6",
    # Nothing here tests crash recovery: the default lease, so that a worker starved of CPU
    # for a few seconds on a loaded machine is not taken for dead (its answered task would
    # then fail as "worker lost after output", which this test forbids).
    "LEASE_SECONDS": "15",
}
# About 1.2 s each; the tail (about 12 s each, last in the queue) outlasts the cooldown.
BURST = "burst {i} [sim:chunks=4] [sim:chunk_delay=0.3]"
TAIL = "tail {i} [sim:chunks=30] [sim:chunk_delay=0.4]"
LIVE = ("STARTING", "RUNNING", "BACKOFF")


class PoolWatch:
    """Samples the pool's live processes (supervisord's view) every 0.2 s in a thread."""

    def __init__(self, rpc: Any) -> None:
        self.rpc = rpc
        self._lock = threading.Lock()  # one XML-RPC proxy, two threads
        self.sizes: list[tuple[float, int]] = []
        self.began = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def size(self) -> int:
        with self._lock:
            infos = self.rpc.supervisor.getAllProcessInfo()
        return sum(
            1
            for info in infos
            if str(info["name"]).startswith("worker-short") and info["statename"] in LIVE
        )

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                size = self.size()
            except OSError:  # supervisord going away at the end
                return
            if not self.sizes or self.sizes[-1][1] != size:
                self.sizes.append((round(time.monotonic() - self.began, 1), size))

    def __enter__(self) -> PoolWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        size = self.size()  # the last change may fall between two samples
        if self.sizes[-1][1] != size:
            self.sizes.append((round(time.monotonic() - self.began, 1), size))


@pytest.fixture
def scaled(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path: Path
) -> Iterator[tuple[System, Supervisord]]:
    system = new_system(valkey, simulator.url, tmp_path, **SCALING)
    settings = get_settings(
        redis_url=system.redis_url,
        v1_url=system.v1_url,
        **{name.lower(): value for name, value in SCALING.items()},
    )
    layout = Layout.create(ROOT, str(tmp_path / "var"))
    layout.make_dirs()
    endpoints = resolve_endpoints(settings, layout)
    # The programs `make run` would run for the short pool and the autoscaler, nothing else;
    # the workers built (and told) to run one task at a time.
    one_each = settings.model_copy(update={"worker_concurrency": WORKER_CONCURRENCY})
    programs = [
        replace(p, command=(*p.command, "--queues", "short"))
        if p.name == AUTOSCALER
        else replace(p, environment=(*p.environment, ("WORKER_CONCURRENCY", "1")))
        for p in plan_programs(one_each, endpoints, layout, sys.executable)
        if p.name.startswith("worker-short") or p.name == AUTOSCALER
    ]
    assert [p.name for p in programs] == [
        "worker-short", "worker-short-2", "worker-short-3", AUTOSCALER
    ]  # fmt: skip
    assert [p.autostart for p in programs] == [True, False, False, True]
    layout.conf_file.write_text(render_supervisord_conf(programs, {}, layout))
    supervisord = Supervisord(layout, env=system.env())
    try:
        system.start_gateway()
        system.start_maintenance()
        supervisord.start()
        yield system, supervisord
    finally:
        supervisord.stop(60, lambda: False)
        system.stop()


def test_a_burst_grows_the_short_pool_and_idleness_drains_it_back_without_losing_a_task(
    scaled: tuple[System, Supervisord],
) -> None:
    system, supervisord = scaled
    log_dir = supervisord.layout.log_dir
    rpc = supervisor(f"unix://{supervisord.layout.socket_file}")
    client = redis.Redis.from_url(system.redis_url)
    wait_until(lambda: live_consumers(client, "short"), 60, 0.2, "the first short worker")
    with PoolWatch(rpc) as watch, system.client() as api:
        assert watch.size() == MIN
        ids = [submit(api, BURST.format(i=i))["task_id"] for i in range(9)]
        ids += [submit(api, TAIL.format(i=i))["task_id"] for i in range(MAX)]
        wait_until(lambda: watch.size() > MIN, 30, 0.2, "the pool to grow above its minimum")
        ends = [wait_terminal(api, task_id, timeout=60) for task_id in ids]
        wait_until(lambda: watch.size() == MIN, 30, 0.2, "the pool to shrink to its minimum")
    ran_on = sorted(text(client.hget(task_key(task_id), "worker")) for task_id in ids[-MAX:])
    print(f"\nshort pool size over time (s, live processes): {watch.sizes}")
    print(f"tail tasks ran on: {ran_on}")
    # Nothing lost, nothing cut and run again.
    assert [end["state"] for end in ends] == ["succeeded"] * len(ends), [
        (end["state"], end.get("error")) for end in ends if end["state"] != "succeeded"
    ]
    assert [end["attempts"] for end in ends] == [1] * len(ends)
    assert max(size for _, size in watch.sizes) == MAX
    assert all(MIN <= size <= MAX for _, size in watch.sizes)
    scaler_log = (log_dir / f"{AUTOSCALER}.log").read_text()
    drained = re.findall(r"draining (\S+) \(finishing (\d+) running tasks\)", scaler_log)
    print(f"drained (process, tasks it held then): {drained}")
    print("".join(line for line in scaler_log.splitlines(True) if "processes (" in line))
    # The shrink to the minimum drained a busy process, and its task finished (above).
    assert len(drained) == MAX - MIN, scaler_log
    assert int(drained[-1][1]) >= 1, drained
    assert "could not" not in scaler_log, scaler_log
    # Every process that left left by itself after a warm shutdown: exit 0, never killed.
    infos = {info["name"]: info for info in rpc.supervisor.getAllProcessInfo()}
    gone = [
        n for n, i in infos.items() if n.startswith("worker-short") and i["statename"] != "RUNNING"
    ]
    assert len(gone) == MAX - MIN
    for name in gone:
        assert infos[name]["statename"] in ("EXITED", "STOPPED"), infos[name]
        assert infos[name]["exitstatus"] == 0, infos[name]
    assert "SIGKILL" not in (log_dir / "supervisord.log").read_text()
    _no_worker_errors(log_dir)


def test_load_is_the_backlog_and_the_tasks_each_process_holds(
    valkey: EmbeddedValkey, tmp_path: Path
) -> None:
    """The autoscaler's reading of Redis, on keys laid out as the live store lays them."""
    client = redis.Redis.from_url(new_system(valkey, "http://127.0.0.1:9", tmp_path).redis_url)
    [config] = pool_configs(get_settings(autoscale=True, worker_concurrency=4), ["short"])
    try:
        client.rpush("short", "m1", "m2", "m3")
        now = int(client.time()[0])
        for task_id, worker, lease in [
            ("a", "short-2@host", now + 30),
            ("b", "short-2@host", now + 30),
            ("c", "short@host", now + 30),
            ("d", "short-3@host", now - 5),  # lease run out: its worker is gone
            ("e", "long@host", now + 30),  # another pool's
        ]:
            client.hset(task_key(task_id), "worker", worker)
            client.zadd(LEASES, {task_id: lease})
        assert read_load(client, [config]) == (
            {"short": 3},
            {"worker-short-2": 2, "worker-short": 1},
        )
        client.hset(PAUSED_QUEUES, "short", "1")  # its consumers take nothing from it
        assert read_load(client, [config])[0] == {"short": 0}
        client.delete(PAUSED_QUEUES)
        client.hset(BREAKER, "state", "open")  # V1 refuses work: more processes won't help
        assert read_load(client, [config])[0] == {"short": 0}
    finally:
        client.flushdb()


def _no_worker_errors(log_dir: Path) -> None:
    """No task or connection error in any worker's log (Celery logs them at ERROR)."""
    for path in log_dir.glob("worker-short*.log"):
        errors = [
            line for line in path.read_text(errors="replace").splitlines() if "ERROR/" in line
        ]
        assert not errors, f"{path.name}: {errors[:5]}"
