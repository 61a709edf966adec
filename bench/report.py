"""Results: a benchmark's figures (`Report`), printed as a table and written to
`bench/results/<name>.json`; progress lines (`log`) and every script's `main()`."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.processes import command_line
from testbed import ROOT

RESULTS_DIR = ROOT / "bench" / "results"


def git_commit() -> str:
    """`git rev-parse --short HEAD`, plus `+dirty` when the tree has uncommitted changes
    (the figures then come from code no commit holds); "unknown" outside a git checkout."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


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
        self.commit = git_commit()  # the code these figures measure, in every row
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
                "commit": self.commit,
            }
        )

    def note(self, text: str) -> None:
        self.notes.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.name,
            "command": self.command,
            "commit": self.commit,
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
        print(f"\n== {self.name} ==  commit {self.commit}  command: {self.command}")
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
