"""Starting and always stopping a benchmark's processes.

A `Bench` owns every process a benchmark starts: a fresh Valkey (`EmbeddedValkey`, temp dir),
the V1 simulator (`SimulatorProcess`), V2 systems (`testbed.System`: gateway, gevent workers,
maintenance, each with its own Redis DB) and plain processes (baseline app, plain Celery),
and stops every one on exit, error or SIGTERM. Also: the command line that reproduces a run,
the children's environment and the open-files limit.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import resource
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from deploy.embedded_valkey import EmbeddedValkey
from testbed import ROOT, V1_TOKEN, ManagedProcess, System
from v1sim.process import SimulatorProcess

# testbed.System sets LEASE_SECONDS=3 and fast retries for tests; benchmarks use the defaults.
PRODUCTION_TIMINGS = {"LEASE_SECONDS": "15", "RETRY_BASE_DELAY": "1.0", "RETRY_MAX_DELAY": "60"}
# A benchmark offers load as one tenant: the per-tenant quota and rate limit (and the queue
# limit) would refuse it; `bench.fairness` sets its own.
NO_SUBMIT_LIMITS = {"QUEUE_LIMIT": "1000000", "TENANT_MAX_QUEUED": "1000000",
                    "TENANT_RATE_PER_SECOND": "0"}  # fmt: skip


# --------------------------------------------------------------------------- commands


def python_exe() -> str:
    exe = Path(sys.executable)
    with contextlib.suppress(ValueError):
        return str(exe.relative_to(ROOT))
    return str(exe)


def command_line(module: str, argv: Sequence[str] | None = None) -> str:
    """The exact command that reproduces this run, from the project root."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join([python_exe(), "-m", module, *args])


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env.update(PYTHONPATH=os.pathsep.join(paths), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def raise_nofile(target: int = 65_536) -> int:
    """Raise this process's open-files soft limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# Set on SIGTERM: helper threads and polling loops stop waiting, so cleanup starts at once.
STOPPING = threading.Event()


def _sigterm(signum: int, frame: FrameType | None) -> None:
    STOPPING.set()
    raise SystemExit(128 + signum)


def pause(seconds: float) -> None:
    """time.sleep that ends the benchmark at once when it is being stopped (SIGTERM)."""
    if STOPPING.wait(seconds):
        raise SystemExit(143)


# --------------------------------------------------------------------------- processes


class Bench:
    """Owns every process a benchmark starts and stops them all on exit (even on errors).

    Logs live in a temp dir, removed after a clean run and kept (path printed) otherwise.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.workdir = Path(tempfile.mkdtemp(prefix=f"oc-bench-{name}-"))
        self._stack = contextlib.ExitStack()
        self._dbs = itertools.count(1)
        self._n = itertools.count(1)
        self.redis_base = ""
        self.valkey_server: EmbeddedValkey | None = None

    def __enter__(self) -> Bench:
        signal.signal(signal.SIGTERM, _sigterm)
        raise_nofile()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._stack.close()
        finally:
            if exc_type is None and not os.environ.get("BENCH_KEEP_LOGS"):
                shutil.rmtree(self.workdir, ignore_errors=True)
            else:
                print(f"[{self.name}] logs kept in {self.workdir}", file=sys.stderr)

    # Valkey ------------------------------------------------------------------------
    def valkey(self) -> EmbeddedValkey:
        server = EmbeddedValkey(self.workdir / "valkey")
        self._stack.callback(server.stop)
        server.start()
        self.valkey_server = server
        self.redis_base = server.url.rsplit("/", 1)[0]
        return server

    def redis_url(self, db: int) -> str:
        return f"{self.redis_base}/{db}"

    def new_db(self) -> int:
        return next(self._dbs)

    def valkey_pid(self) -> int | None:
        server = self.valkey_server
        return server.process.pid if server is not None and server.process is not None else None

    # V1 simulator ------------------------------------------------------------------
    def simulator(self, capacity: int, **kwargs: Any) -> SimulatorProcess:
        sim = SimulatorProcess(
            token=V1_TOKEN,
            agents=("main",),
            capacity=capacity,
            log_path=self.workdir / f"v1sim-{next(self._n)}.log",
            **kwargs,
        )
        self._stack.callback(sim.stop, 3.0)
        sim.start()
        return sim

    # V2 systems --------------------------------------------------------------------
    def system(self, v1_url: str, **overrides: str) -> System:
        """A `testbed.System` on its own Redis DB. The testbed's test-speed lease and
        retry settings are put back to the production defaults, and submit limits lifted,
        unless overridden."""
        overrides = {**PRODUCTION_TIMINGS, **NO_SUBMIT_LIMITS, **overrides}
        db = self.new_db()
        workdir = self.workdir / f"system-db{db}"
        workdir.mkdir(parents=True, exist_ok=True)
        system = System(
            redis_base=self.redis_base, db=db, v1_url=v1_url, workdir=workdir, overrides=overrides
        )
        self._stack.callback(stop_system, system)
        return system

    # Plain processes ---------------------------------------------------------------
    def process(
        self,
        name: str,
        command: list[str],
        env: dict[str, str] | None = None,
        ready_log: str | None = None,
        ready_timeout: float = 60.0,
    ) -> ManagedProcess:
        proc = ManagedProcess(
            name, command, env or child_env(), self.workdir / f"{name}-{next(self._n)}.log"
        )
        self._stack.callback(proc.stop, 5.0)
        proc.start()
        if ready_log is not None:
            proc.wait_for_log(ready_log, ready_timeout)
        return proc

    def callback(self, fn: Callable[..., Any], *args: Any) -> None:
        self._stack.callback(fn, *args)


def stop_system(system: System, timeout: float = 5.0) -> None:
    """Stop quickly: SIGTERM to every process at once, SIGKILL whatever still runs after
    `timeout` s (a benchmark does not need Celery's warm shutdown to finish its tasks)."""
    procs = [p for p in reversed(system.processes) if p.alive()]
    for proc in procs:
        with contextlib.suppress(Exception):
            assert proc.proc is not None
            proc.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        with contextlib.suppress(Exception):
            assert proc.proc is not None
            proc.proc.wait(max(deadline - time.monotonic(), 0.1))
    for proc in procs:
        with contextlib.suppress(Exception):
            proc.kill()
    system.processes.clear()


def plain_celery_worker(
    bench: Bench,
    broker_url: str,
    v1_url: str,
    *,
    pool: str = "prefork",
    concurrency: int | None = None,
    name: str = "plain",
    app: str = "bench.plain_celery",
    queues: str | None = None,
    extra: tuple[str, ...] = (),
) -> ManagedProcess:
    """`celery -A bench.plain_celery worker`: the textbook setup (see bench/plain_celery.py);
    `app="bench.plain_celery_tuned"` for the tuned one (shared client, task_routes); `extra`
    worker options (`-E`: task events, as Flower needs)."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "-P",
        pool,
        "-n",
        f"{name}-{uuid.uuid4().hex[:6]}@%h",
        "-l",
        "INFO",
    ]
    if concurrency is not None:
        command += ["-c", str(concurrency)]
    if queues is not None:
        command += ["-Q", queues]
    command += list(extra)
    env = child_env(PLAIN_BROKER_URL=broker_url, PLAIN_V1_URL=v1_url, PLAIN_V1_TOKEN=V1_TOKEN)
    return bench.process(f"celery-{name}", command, env, ready_log="ready.", ready_timeout=90)
