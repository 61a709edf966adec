"""Run every benchmark in sequence and write `bench/results/summary.md` (`make bench`).

Each benchmark runs as its own process (`python -m bench.<name> [--quick]`), so one that
fails or hangs cannot take the others down: it is stopped after --timeout seconds (SIGTERM,
which makes it stop every process it started), reported as failed, and the run goes on.
Each writes `bench/results/<name>.json`; its output is also kept in
`bench/results/<name>.log`. The summary has one row per figure: benchmark, figure, value,
baseline, ratio (ours / baseline, measured in the same run) and the exact command.

    .venv/bin/python -m bench.run_all [--quick] [--only ws_fanout,submit_latency] [--skip ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.processes import command_line, python_exe, raise_nofile
from bench.report import RESULTS_DIR, fmt, git_commit
from testbed import ROOT

BENCHMARKS = (
    "ws_fanout",  # issue 3
    "submit_latency",  # issue 5 #1
    "dispatch_overhead",  # issue 5 #2
    "inflight_1000",  # issue 5 #3
    "head_of_line",  # issue 5 #4
    "worker_cpu",  # issue 5 #5
    "crash_recovery",  # issue 5 #6
    "fairness",  # issue 8
    "v1_slots",  # issue 13: V1 slots never idle while work waits
    "whole_system",  # issue 13: full system measured from outside
    "inflight_10k",  # issue 13: 10,000 tasks of 60 s (minutes)
    "gateway_workers",  # issue 13: submits/s with GATEWAY_WORKERS=1 and 2
    "event_bridge",  # issue 13: a gateway's CPU for events nobody on it follows
)
# Benchmarks that need longer than --timeout by design (seconds, full size).
LONG_TIMEOUTS = {"inflight_10k": 1200.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run_all", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every benchmark")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--skip", default="", help="comma-separated benchmark names")
    parser.add_argument("--timeout", type=float, default=480.0, help="s per benchmark")
    args = parser.parse_args(argv)
    only = [n for n in args.only.split(",") if n]
    skip = {n for n in args.skip.split(",") if n}
    unknown = (set(only) | skip) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    args.names = [n for n in (only or BENCHMARKS) if n not in skip]
    return args


def run_one(name: str, quick: bool, timeout: float) -> dict[str, Any]:
    argv = ["--quick"] if quick else []
    command = [sys.executable, "-m", f"bench.{name}", *argv]
    shown = shlex.join([python_exe(), "-m", f"bench.{name}", *argv])
    result_path = RESULTS_DIR / f"{name}.json"
    log_path = RESULTS_DIR / f"{name}.log"
    result_path.unlink(missing_ok=True)  # never summarise a stale result as this run's
    print(f"\n##### {shown}", flush=True)
    started = time.time()
    status = "ok"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        tee = threading.Thread(target=_tee, args=(proc, log), daemon=True)
        tee.start()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout:.0f}s"
            _terminate(proc)
        except KeyboardInterrupt:
            _terminate(proc)
            raise
        tee.join(10)
    code = proc.returncode
    if status == "ok" and code != 0:
        status = f"exit code {code}"
    if status == "ok" and not result_path.exists():
        status = "no results file written"
    tail = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()][-3:]
    return {
        "name": name,
        "command": shown,
        "status": status,
        "seconds": round(time.time() - started, 1),
        "error_tail": tail if status != "ok" else [],
        "result": json.loads(result_path.read_text()) if result_path.exists() else None,
    }


def _tee(proc: subprocess.Popen[str], log: Any) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        log.write(line)
        log.flush()


def _terminate(proc: subprocess.Popen[str]) -> None:
    """SIGTERM lets the benchmark stop everything it started; SIGKILL if it will not."""
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _cell(value: Any, unit: str = "") -> str:
    text = fmt(value)
    if text != "-" and unit:
        text = f"{text} {unit}"
    return text.replace("|", "\\|")


def write_summary(runs: list[dict[str, Any]], args: argparse.Namespace, started: float) -> Path:
    commit = git_commit()
    lines = [
        "# OpenClaw V2 benchmarks",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))} with "
        f"`{command_line('bench.run_all')}` on {os.cpu_count()} CPUs "
        f"(load average at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}); "
        f"{time.time() - started:.0f} s in all. Ratio = ours / baseline, both measured in the "
        "same run. Every figure is reproduced by the command in its row, on the commit in its "
        f"row (`+dirty`: uncommitted changes on top of it; at the end of this run: {commit}).",
        "",
        "| benchmark | figure | value | baseline | ratio | commit | command |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        result = run["result"]
        if run["status"] != "ok" or result is None:
            reason = run["status"] + (
                ": " + " / ".join(run["error_tail"]) if run["error_tail"] else ""
            )
            reason = reason.replace("|", "\\|")[:400]
            lines.append(
                f"| {run['name']} | **FAILED** ({reason}) | - | - | - | {commit} "
                f"| `{run['command']}` |"
            )
            if result is None:
                continue
        for f in result["figures"]:
            figure = f["figure"] + (f" ({f['note']})" if f.get("note") else "")
            lines.append(
                f"| {run['name']} | {figure.replace('|', '/')} | {_cell(f['value'], f['unit'])} | "
                f"{_cell(f['baseline'], f['unit'])} | {fmt(f['ratio'])} | "
                f"{f.get('commit', result.get('commit', '-'))} | `{f['command']}` |"
            )
    lines += ["", "## Notes", ""]
    for run in runs:
        result = run["result"]
        lines.append(f"- **{run['name']}** ({run['status']}, {run['seconds']} s)")
        if result:
            load = result.get("machine", {}).get("loadavg_at_start")
            if load:
                lines.append(f"  - load average at start: {', '.join(map(str, load))}")
            for note in result.get("notes", []):
                lines.append(f"  - {note}")
    lines.append("")
    path = RESULTS_DIR / "summary.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_nofile()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    started = time.time()
    runs = []
    try:
        for name in args.names:
            timeout = max(args.timeout, LONG_TIMEOUTS.get(name, 0.0))
            runs.append(run_one(name, args.quick, timeout))
            print(f"##### {name}: {runs[-1]['status']} ({runs[-1]['seconds']} s)", flush=True)
    finally:
        path = write_summary(runs, args, started)
        print(f"\nsummary: {path.relative_to(ROOT)}")
        for run in runs:
            print(f"  {run['name']:18s} {run['status']} ({run['seconds']} s)")
    return 0 if all(r["status"] == "ok" for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
