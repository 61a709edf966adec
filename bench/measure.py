"""Measuring: RSS and CPU of processes (`ProcWatch`, sampled over time by `Sampler`) and
latency statistics (`percentile`, `describe`)."""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterable, Sequence

import psutil

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

    def cpu_pct_between(self, name: str, start: float, end: float) -> float | None:
        """Mean CPU use (% of one core) between the first sample at or after `start` and the
        last at or before `end`."""
        inside = [(t, cpu) for t, _, cpu in self.series[name] if start <= t <= end]
        if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
            return None
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return round(100 * (c1 - c0) / (t1 - t0), 1)

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
