"""Issue 5 #1: submit latency of `POST /v1/tasks`, against a one-LPUSH FastAPI baseline.

Both servers run in their own process with the same uvicorn settings, on the same fresh
Valkey (separate DBs). No Celery worker runs: submitted tasks stay queued (QUEUE_LIMIT is
raised to 1,000,000 so the queue never refuses). Load comes from this process through
`bench.loadgen` (raw HTTP/1.1 keep-alive, open loop: latency from the scheduled send time).

Figures: p50/p99 at each offered rate for ours and the baseline with p99(ours)/p99(base)
(after --rates, the rate grows x1.5 per step until one side's p99 passes 50 ms, up to
--max-rate); max sustained submits/s (closed loop, --closed-concurrency clients); the
highest offered rate each served with p99 < 50 ms and no errors; server CPU per submit,
Valkey's CPU per submit (both sides use one Valkey, one side at a time) and their sum.

    .venv/bin/python -m bench.submit_latency [--quick] [--rates 100,200,400,800]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Iterator
from typing import Any

from bench import loadgen
from bench.api import AUTH
from bench.measure import ProcWatch
from bench.processes import Bench, child_env
from bench.report import Report, log

NAME = "submit_latency"
P99_TARGET_MS = 50.0  # the design notes' "task id in < 50 ms"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.submit_latency", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer rates, shorter phases")
    parser.add_argument("--rates", default=None, help="offered rates, e.g. 100,200,400,800")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per rate")
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="phases per rate and side, alternating sides; the median one's figures are "
        "reported (default 5, quick 1)",
    )
    parser.add_argument("--closed-concurrency", type=int, default=32)
    parser.add_argument("--closed-seconds", type=float, default=None)
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout (s)")
    parser.add_argument(
        "--max-rate",
        type=float,
        default=None,
        help="after --rates, offer x1.5 more per step until one side's p99 passes "
        f"{P99_TARGET_MS:.0f} ms or errs, up to this rate (default 4000; quick 1600; 0: off)",
    )
    args = parser.parse_args(argv)
    if args.rates is None:
        args.rates = "100,200,400" if args.quick else "100,200,400,800"
    args.rate_list = [float(r) for r in args.rates.split(",") if r.strip()]
    if args.max_rate is None:
        args.max_rate = 1600.0 if args.quick else 4000.0
    if args.seconds is None:
        args.seconds = 3.0 if args.quick else 4.0
    if args.repeats is None:
        # Five, not three: a p99 of a 4 s phase is set by a single stall of a few tens of ms
        # on this shared 2-core box; with three, two stalled repeats of one side (a run at
        # abc7d6a: 1,200/s) decided the median.
        args.repeats = 1 if args.quick else 5
    if args.closed_seconds is None:
        args.closed_seconds = 3.0 if args.quick else 6.0
    return args


BODY = {"message": "benchmark submit [sim:chunks=1]", "estimated_seconds": 5}


def start_baseline(bench: Bench, redis_url: str) -> tuple[str, int]:
    from deploy.embedded_valkey import free_port

    port = free_port()
    proc = bench.process(
        "baseline-app",
        [sys.executable, "-m", "bench.baseline_app", "--port", str(port), "--redis-url", redis_url],
        child_env(),
    )
    url = f"http://127.0.0.1:{port}"
    proc.wait_for_http(f"{url}/readyz", 30)
    return url, proc.pid


async def settle(
    watches: dict[str, ProcWatch], limit: float = 0.15, max_wait: float = 30.0
) -> float:
    """Wait until every server is idle (< `limit` of a core over 0.5 s), so a phase that
    overloaded one server does not leave it working through a backlog in the next phase.
    Returns the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < max_wait:
        before = {n: w.cpu() for n, w in watches.items()}
        await asyncio.sleep(0.5)
        if all((w.cpu() - before[n]) / 0.5 < limit for n, w in watches.items()):
            break
    return time.monotonic() - start


def offered_rates(args: argparse.Namespace, out: dict[str, Any]) -> Iterator[float]:
    """--rates, then x1.5 per step until a side's last phase had p99 over the target or
    errors (so the figures separate the two), or past --max-rate."""
    yield from args.rate_list
    rate = args.rate_list[-1] if args.rate_list else 100.0
    while True:
        last = [o["open"][-1] for o in out.values() if o["open"]]
        if any(p["errors"] or (p["latency_ms"]["p99"] or 0) > P99_TARGET_MS for p in last):
            return
        rate = float(round(rate * 1.5, -2))
        if rate > args.max_rate:
            return
        yield rate


def cpu_ms(watch: ProcWatch | None, cpu0: float, ok: int) -> float | None:
    """CPU ms per answered submit since `cpu0` (None without a process or an answer)."""
    return round(1000 * (watch.cpu() - cpu0) / ok, 3) if watch is not None and ok else None


async def measure(
    args: argparse.Namespace,
    targets: dict[str, tuple[str, int]],
    valkey: ProcWatch | None = None,
) -> dict[str, Any]:
    """targets: name -> (base url, server pid); `valkey`: the Valkey both use (phases run
    one target at a time, so its CPU in a phase is that target's). Returns per-target phase
    summaries."""
    out: dict[str, Any] = {name: {"open": [], "closed": None} for name in targets}
    pools: dict[str, loadgen.Pool] = {}
    requests: dict[str, bytes] = {}
    watches = {name: ProcWatch(pid) for name, (_, pid) in targets.items()}
    for name, (url, _) in targets.items():
        host, port = url.removeprefix("http://").split(":")
        pools[name] = loadgen.Pool(host, int(port), limit=512)
        requests[name] = loadgen.build_request(host, int(port), "/v1/tasks", BODY, AUTH)
    try:
        for name in targets:  # warm-up: connections, imports, first SQL insert
            warm = await loadgen.open_loop(pools[name], requests[name], 100, 1.5, args.timeout)
            if warm.ok == 0:
                raise RuntimeError(f"{name}: warm-up failed: {dict(warm.errors)}")
        for rate in offered_rates(args, out):
            repeats: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
            for _ in range(args.repeats):
                for name in targets:  # alternating: a noisy moment hits one repeat, not a side
                    repeats[name].append(await open_phase(args, name, rate, pools, requests,
                                                          watches, valkey))  # fmt: skip
            for name in targets:
                out[name]["open"].append(median_phase(repeats[name]))
        for name in targets:
            await settle(watches)
            cpu0 = watches[name].cpu()
            vk0 = valkey.cpu() if valkey is not None else 0.0
            phase = await loadgen.closed_loop(
                pools[name], requests[name], args.closed_concurrency, args.closed_seconds
            )
            summary = phase.summary()
            summary["server_cpu_ms_per_submit"] = (
                round(1000 * (watches[name].cpu() - cpu0) / phase.ok, 3) if phase.ok else None
            )
            summary["valkey_cpu_ms_per_submit"] = cpu_ms(valkey, vk0, phase.ok)
            out[name]["closed"] = summary
            log(
                NAME,
                f"{name:8s} closed loop x{args.closed_concurrency}: {summary['achieved_rate']}/s "
                f"p99 {summary['latency_ms']['p99']} ms server cpu "
                f"{summary['server_cpu_ms_per_submit']} ms/submit",
            )
    finally:
        for pool in pools.values():
            pool.close()
    return out


async def open_phase(
    args: argparse.Namespace,
    name: str,
    rate: float,
    pools: dict[str, loadgen.Pool],
    requests: dict[str, bytes],
    watches: dict[str, ProcWatch],
    valkey: ProcWatch | None,
) -> dict[str, Any]:
    """One open-loop phase of one side at `rate`, from an idle system."""
    waited = await settle(watches)
    cpu0 = watches[name].cpu()
    vk0 = valkey.cpu() if valkey is not None else 0.0
    phase = await loadgen.open_loop(pools[name], requests[name], rate, args.seconds, args.timeout)
    summary = phase.summary()
    summary["settled_before_s"] = round(waited, 1)
    summary["server_cpu_ms_per_submit"] = cpu_ms(watches[name], cpu0, phase.ok)
    summary["valkey_cpu_ms_per_submit"] = cpu_ms(valkey, vk0, phase.ok)
    lat = summary["latency_ms"]
    log(
        NAME,
        f"{name:8s} {rate:6.0f}/s offered: ok {phase.ok}/{phase.sent} "
        f"p50 {lat['p50']} ms p99 {lat['p99']} ms achieved "
        f"{summary['achieved_rate']}/s errors {dict(phase.errors)} "
        f"client cpu {summary['client_cpu_pct']}%",
    )
    return summary


def median_phase(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """The repeat with the median p99 (errors rank worst), with every repeat's p99 kept: a
    p99 of a few thousand samples moves with one busy moment of a shared machine."""

    def rank(phase: dict[str, Any]) -> float:
        p99 = phase["latency_ms"]["p99"]
        return float("inf") if phase["errors"] or p99 is None else float(p99)

    ordered = sorted(phases, key=rank)
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["p99_ms_of_repeats"] = [phase["latency_ms"]["p99"] for phase in phases]
    chosen["errors_of_repeats"] = [phase["errors"] for phase in phases]
    return chosen


def max_rate_under_target(phases: list[dict[str, Any]]) -> float | None:
    good = [
        p["offered_rate"]
        for p in phases
        if not p["errors"]
        and p["latency_ms"]["p99"] is not None
        and p["latency_ms"]["p99"] < P99_TARGET_MS
    ]
    return max(good) if good else None


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, f"bench.{NAME}", {k: v for k, v in vars(args).items()})
    with Bench(NAME) as bench:
        bench.valkey()
        # No queue limit or tenant quota (unfinished tasks, submit rate) refuses: no task ends.
        system = bench.system(
            "http://127.0.0.1:9",
            QUEUE_LIMIT="1000000",
            TENANT_MAX_QUEUED="1000000",
            TENANT_RATE_PER_SECOND="0",
        )
        # /healthz: no V1 runs here, so /readyz (which asks V1) would never say ready.
        system.start_gateway(ready_path="/healthz")
        base_url, base_pid = start_baseline(bench, bench.redis_url(bench.new_db()))
        assert system.gateway is not None
        targets = {"ours": (system.url, system.gateway.pid), "baseline": (base_url, base_pid)}
        valkey_pid = bench.valkey_pid()
        valkey = ProcWatch(valkey_pid, tree=False) if valkey_pid is not None else None
        log(NAME, f"gateway {system.url}, baseline {base_url}; no workers (tasks stay queued)")
        try:
            import uvloop

            results = uvloop.run(measure(args, targets, valkey))
        except ImportError:
            results = asyncio.run(measure(args, targets, valkey))
    report.details = results
    ours, base = results["ours"], results["baseline"]
    for o, b in zip(ours["open"], base["open"], strict=True):
        rate = f"{o['offered_rate']:.0f}/s"
        report.add(
            f"submit p50 @ {rate}", o["latency_ms"]["p50"], "ms", baseline=b["latency_ms"]["p50"]
        )
        note = ""
        if len(o["p99_ms_of_repeats"]) > 1:
            note = (f"median of {len(o['p99_ms_of_repeats'])} repeats; p99s ours "
                    f"{o['p99_ms_of_repeats']} base {b['p99_ms_of_repeats']}")  # fmt: skip
        if o["errors"] or b["errors"]:
            note += f" errors ours={o['errors']} base={b['errors']}"
        report.add(
            f"submit p99 @ {rate}",
            o["latency_ms"]["p99"],
            "ms",
            baseline=b["latency_ms"]["p99"],
            note=note,
        )
    oc, bc = ours["closed"], base["closed"]
    report.add(
        "max sustained submits/s (closed loop)",
        oc["achieved_rate"],
        "1/s",
        baseline=bc["achieved_rate"],
        note=f"{args.closed_concurrency} clients, p99 ours {oc['latency_ms']['p99']} ms / "
        f"base {bc['latency_ms']['p99']} ms",
    )
    report.add(
        f"highest offered rate with p99 < {P99_TARGET_MS:.0f} ms",
        max_rate_under_target(ours["open"]),
        "1/s",
        baseline=max_rate_under_target(base["open"]),
        note="of the rates tried",
    )
    report.add(
        "server CPU per submit (closed loop)",
        oc["server_cpu_ms_per_submit"],
        "ms",
        baseline=bc["server_cpu_ms_per_submit"],
        note="gateway / baseline process only (Valkey not counted)",
    )
    report.add(
        "Valkey CPU per submit (closed loop)",
        oc["valkey_cpu_ms_per_submit"],
        "ms",
        baseline=bc["valkey_cpu_ms_per_submit"],
        note="the one Valkey both use, read while only that side ran",
    )
    both = [
        None
        if c["server_cpu_ms_per_submit"] is None or c["valkey_cpu_ms_per_submit"] is None
        else round(c["server_cpu_ms_per_submit"] + c["valkey_cpu_ms_per_submit"], 3)
        for c in (oc, bc)
    ]
    report.add(
        "server + Valkey CPU per submit (closed loop)",
        both[0],
        "ms",
        baseline=both[1],
        note="ours moves work into Valkey scripts: this is the whole cost of a submit",
    )
    report.note(
        "ours = app gateway (python -m app) POST /v1/tasks; baseline = bench/baseline_app.py "
        "(pydantic body, one LPUSH); same uvicorn settings; no Celery worker running "
        "(tasks stay queued, QUEUE_LIMIT=1000000); ratio = ours / baseline. Each offered rate "
        f"runs {args.repeats} time(s) per side, {args.seconds:g} s each, sides alternating; "
        "the repeat with the median p99 is reported."
    )
    report.note("load generator: bench/loadgen.py in this process (2 cores shared with servers)")
    return report


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    report = run(args)
    report.finish()
    log(NAME, f"done in {time.time() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
