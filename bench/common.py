"""What every benchmark shares: starting and always stopping processes, sampling their
memory and CPU, latency statistics, and writing `bench/results/<name>.json`.

Processes: a fresh Valkey (`EmbeddedValkey`, temp dir), the V1 simulator
(`SimulatorProcess`), V2 systems (`tests.harness.System`: gateway, gevent workers,
maintenance, each with its own Redis DB) and plain processes (baseline app, plain Celery).
A `Bench` owns all of them and stops every one on exit, error or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import platform
import resource
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import psutil
import redis

from app import keys
from app.embedded_valkey import EmbeddedValkey
from tests.harness import API_KEY, ROOT, V1_TOKEN, ManagedProcess, System, wait_until
from v1sim.process import SimulatorProcess

RESULTS_DIR = ROOT / "bench" / "results"
# tests.harness sets LEASE_SECONDS=3 and fast retries for tests; benchmarks use the defaults.
PRODUCTION_TIMINGS = {"LEASE_SECONDS": "15", "RETRY_BASE_DELAY": "1.0", "RETRY_MAX_DELAY": "60"}
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out"})
AUTH = {"Authorization": f"Bearer {API_KEY}"}

__all__ = [
    "API_KEY",
    "AUTH",
    "ROOT",
    "TERMINAL",
    "V1_TOKEN",
    "Bench",
    "ProcWatch",
    "Report",
    "Sampler",
    "api_client",
    "command_line",
    "describe",
    "percentile",
    "wait_until",
]


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
        """A `tests.harness.System` on its own Redis DB. The harness's test-speed lease and
        retry settings are put back to the production defaults unless overridden."""
        overrides = {**PRODUCTION_TIMINGS, **overrides}
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
) -> ManagedProcess:
    """`celery -A bench.plain_celery worker`: the textbook setup (see bench/plain_celery.py)."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "bench.plain_celery",
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
    env = child_env(PLAIN_BROKER_URL=broker_url, PLAIN_V1_URL=v1_url, PLAIN_V1_TOKEN=V1_TOKEN)
    return bench.process(f"celery-{name}", command, env, ready_log="ready.", ready_timeout=90)


# --------------------------------------------------------------------------- measuring


class ProcWatch:
    """RSS and CPU seconds of one process, optionally with all its descendants."""

    def __init__(self, pid: int, tree: bool = True) -> None:
        self.pid = pid
        self.tree = tree
        self.proc = psutil.Process(pid)

    def _procs(self) -> list[psutil.Process]:
        procs = [self.proc]
        if self.tree:
            with contextlib.suppress(psutil.Error):
                procs += self.proc.children(recursive=True)
        return procs

    def rss(self) -> int:
        total = 0
        for proc in self._procs():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def cpu(self) -> float:
        """user+system seconds of the process (and live descendants, and reaped children)."""
        total = 0.0
        for i, proc in enumerate(self._procs()):
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
                if i == 0 and self.tree:
                    total += times.children_user + times.children_system
        return total


class Sampler:
    """Samples RSS and CPU of named processes every `interval` seconds in a thread."""

    def __init__(self, watches: dict[str, ProcWatch], interval: float = 0.25) -> None:
        self.watches = dict(watches)
        self.interval = interval
        self.series: dict[str, list[tuple[float, int, float]]] = {n: [] for n in watches}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._lock = threading.Lock()

    def add(self, name: str, watch: ProcWatch) -> None:
        with self._lock:
            self.watches[name] = watch
            self.series.setdefault(name, [])

    def sample(self) -> None:
        now = time.time()
        with self._lock:
            items = list(self.watches.items())
        for name, watch in items:
            try:
                point = (now, watch.rss(), watch.cpu())
            except psutil.Error:
                continue
            self.series[name].append(point)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()

    def peak_rss(self, name: str, since: float = 0.0) -> int:
        return max((rss for t, rss, _ in self.series[name] if t >= since), default=0)

    def peak_cpu_pct(self, name: str, window: float = 1.0) -> float | None:
        """Highest CPU use (% of one core) over any `window` s stretch of the samples."""
        series = self.series[name]
        best: float | None = None
        j = 0
        for i, (t_i, _, cpu_i) in enumerate(series):
            j = max(j, i + 1)
            while j < len(series) and series[j][0] - t_i < window:
                j += 1
            if j >= len(series):
                break
            t_j, _, cpu_j = series[j]
            rate = 100 * (cpu_j - cpu_i) / (t_j - t_i)
            best = rate if best is None else max(best, rate)
        return None if best is None else round(best, 1)

    def total_peak_rss(self, names: Iterable[str]) -> int:
        """Peak of the sum of several processes' RSS (sampled together)."""
        names = list(names)
        length = min((len(self.series[n]) for n in names), default=0)
        return max((sum(self.series[n][i][1] for n in names) for i in range(length)), default=0)


def percentile(values: Sequence[float], p: float) -> float | None:
    if not values:
        return None
    data = sorted(values)
    k = (len(data) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def describe(values: Sequence[float], scale: float = 1000.0) -> dict[str, float | int | None]:
    """n, p50, p90, p99, max, mean of `values` (seconds), scaled (ms by default)."""

    def s(v: float | None) -> float | None:
        return None if v is None else round(v * scale, 3)

    return {
        "n": len(values),
        "p50": s(percentile(values, 50)),
        "p90": s(percentile(values, 90)),
        "p99": s(percentile(values, 99)),
        "max": s(max(values) if values else None),
        "mean": s(sum(values) / len(values) if values else None),
    }


MIB = 1024 * 1024


def mib(n_bytes: float) -> float:
    return round(n_bytes / MIB, 1)


# --------------------------------------------------------------------------- HTTP helpers


def api_client(base_url: str, connections: int = 100, timeout: float = 60.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers=AUTH,
        timeout=timeout,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        trust_env=False,
    )


async def submit_one(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    """POST /v1/tasks; returns the response plus `t_send` / `t_done` (unix seconds)."""
    t_send = time.time()
    response = await client.post("/v1/tasks", json=body)
    t_done = time.time()
    if response.status_code != 202:
        raise RuntimeError(f"submit answered {response.status_code}: {response.text[:300]}")
    data: dict[str, Any] = response.json()
    data.update(t_send=t_send, t_done=t_done)
    return data


async def submit_many(
    client: httpx.AsyncClient, bodies: Sequence[dict[str, Any]], concurrency: int = 32
) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(concurrency)

    async def one(body: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            return await submit_one(client, body)

    return list(await asyncio.gather(*(one(b) for b in bodies)))


async def fetch_tasks(
    client: httpx.AsyncClient, ids: Sequence[str], concurrency: int = 16
) -> dict[str, dict[str, Any]]:
    """GET /v1/tasks/{id} for every id (what a user sees)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(task_id: str) -> tuple[str, dict[str, Any]]:
        async with gate:
            response = await client.get(f"/v1/tasks/{task_id}")
            return task_id, (response.json() if response.status_code == 200 else {})

    return dict(await asyncio.gather(*(one(i) for i in ids)))


def live_states(redis_url: str, ids: Sequence[str], field: str = "state") -> dict[str, str]:
    """A field of each task's live record, read straight from Redis (cheap polling that
    adds no load to the gateway; the final figures come from GET /v1/tasks/{id})."""
    client = redis.Redis.from_url(redis_url)
    out: dict[str, str] = {}
    try:
        for start in range(0, len(ids), 1000):
            chunk = ids[start : start + 1000]
            pipe = client.pipeline(transaction=False)
            for task_id in chunk:
                pipe.hget(keys.task_key(task_id), field)
            for task_id, value in zip(chunk, pipe.execute(), strict=True):
                out[task_id] = value.decode() if isinstance(value, bytes) else (value or "")
    finally:
        client.close()
    return out


def wait_all_terminal(
    redis_url: str, ids: Sequence[str], timeout: float, interval: float = 0.5
) -> tuple[bool, dict[str, str]]:
    """Poll the live records until every task is terminal or `timeout` passes."""
    deadline = time.monotonic() + timeout
    pending = list(ids)
    states: dict[str, str] = {}
    while True:
        states.update(live_states(redis_url, pending))
        pending = [i for i in pending if states.get(i) not in TERMINAL]
        if not pending or time.monotonic() > deadline:
            return not pending, states
        pause(interval)


def iso_to_unix(value: str | None) -> float | None:
    if not value:
        return None
    from datetime import datetime

    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def new_tag(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- results


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return str(value)


class Report:
    """Figures of one benchmark run: printed as a table and written as JSON."""

    def __init__(self, name: str, module: str, params: dict[str, Any]) -> None:
        self.name = name
        self.command = command_line(module)
        self.params = params
        self.figures: list[dict[str, Any]] = []
        self.details: dict[str, Any] = {}
        self.notes: list[str] = []
        self.started = time.time()
        # The machine may be shared (other test runs): keep its load next to the figures.
        self.loadavg_start = [round(x, 2) for x in os.getloadavg()]

    def add(
        self,
        figure: str,
        value: float | int | None,
        unit: str = "",
        *,
        baseline: float | int | None = None,
        ratio: float | None = None,
        note: str = "",
    ) -> None:
        if ratio is None and value is not None and baseline:
            ratio = value / baseline
        self.figures.append(
            {
                "figure": figure,
                "value": value,
                "unit": unit,
                "baseline": baseline,
                "ratio": None if ratio is None else float(f"{ratio:.4g}"),
                "note": note,
                "command": self.command,
            }
        )

    def note(self, text: str) -> None:
        self.notes.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "command": self.command,
            "started_at": self.started,
            "duration_s": round(time.time() - self.started, 1),
            "params": self.params,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "loadavg_at_start": self.loadavg_start,
                "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
            },
            "figures": self.figures,
            "notes": self.notes,
            "details": self.details,
        }

    def write(self) -> Path:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{self.name}.json"
        path.write_text(json.dumps(self.as_dict(), indent=2, default=str) + "\n")
        return path

    def print(self) -> None:
        rows = [("figure", "value", "unit", "baseline", "ratio", "note")]
        for f in self.figures:
            rows.append(
                (
                    f["figure"],
                    fmt(f["value"]),
                    f["unit"],
                    fmt(f["baseline"]),
                    fmt(f["ratio"]),
                    f["note"],
                )
            )
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
        print(f"\n== {self.name} ==  command: {self.command}")
        for i, row in enumerate(rows):
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
            if i == 0:
                print("  ".join("-" * w for w in widths))
        for text in self.notes:
            print(f"note: {text}")

    def finish(self) -> None:
        path = self.write()
        self.print()
        print(f"results: {path.relative_to(ROOT)}")


def log(name: str, message: str) -> None:
    print(f"[{name} {time.strftime('%H:%M:%S')}] {message}", flush=True)


def script_main(
    run: Callable[[argparse.Namespace], Report],
    parse_args: Callable[[list[str] | None], argparse.Namespace],
    argv: list[str] | None = None,
) -> int:
    """The `main()` of every benchmark script: run it, then write its results."""
    run(parse_args(argv)).finish()
    return 0
