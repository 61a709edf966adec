"""Issue 5 #4: head-of-line blocking: short tasks behind a saturated long pool.

Ours: a worker on `long` with -c 10 and a backlog of long tasks (`estimated_seconds: 600`,
`[sim:delay=60]`, default 5,000) queued behind them; a worker on `short` with -c 10. Then 20
short tasks (`[sim:delay=0]`) are submitted; figures: their wait submit -> V1 start and
submit -> terminal, p50/p99.

Baseline (same run): the textbook setup (`bench/plain_celery.py`, one queue, prefork -c 10)
with the same long backlog and the same 20 short tasks sent to that one queue. A short task
there starts only after the whole backlog ahead of it (hours), so the run stops after
--baseline-wait seconds and the baseline figures are lower bounds (">= wait", censored);
the expected wait (backlog / 10 slots x 60 s) is reported next to it.

Tuned baseline (same run): Celery as a competent user sets it up (`bench/plain_celery_tuned.py`):
ordinary `task_routes` (long calls to queue `long`, short ones to `short`), one prefork worker
per queue with the same slots as ours, run to completion (no cut-off: its figures are real).

    .venv/bin/python -m bench.head_of_line [--quick] [--backlog 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.api import api_client, live_states, new_tag, submit_many, submit_one
from bench.measure import describe, percentile
from bench.processes import Bench, plain_celery_worker, stop_system
from bench.report import Report, log, script_main
from testbed import wait_until
from v1sim.process import SimulatorProcess

NAME = "head_of_line"
LONG_DELAY = 60


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.head_of_line", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backlog", type=int, default=None, help="long tasks (5000; quick 500)")
    parser.add_argument("--short", type=int, default=20, help="short tasks")
    parser.add_argument("--slots", type=int, default=10, help="-c of the long (and short) pool")
    parser.add_argument("--spacing", type=float, default=0.25, help="seconds between shorts")
    parser.add_argument(
        "--baseline-wait", type=float, default=None, help="seconds (default 60; quick 20)"
    )
    parser.add_argument(
        "--tuned-timeout", type=float, default=120.0, help="s the tuned baseline may take"
    )
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args(argv)
    if args.backlog is None:
        args.backlog = 500 if args.quick else 5000
    if args.baseline_wait is None:
        args.baseline_wait = 20.0 if args.quick else 60.0
    return args


def censored_stats(values: list[float | None], limit: float) -> dict[str, Any]:
    """p50/p99 in ms where None = not reached within `limit` s (then a lower bound)."""
    data = [math.inf if v is None else v for v in values]
    out: dict[str, Any] = {"n": len(data), "reached": sum(1 for v in values if v is not None)}
    for p in (50, 99):
        v = percentile(data, p)
        censored = v is None or math.isinf(v) or math.isnan(v)
        out[f"p{p}"] = round(1000 * limit, 1) if censored else round(1000 * v, 3)  # type: ignore[operator]
        out[f"p{p}_censored"] = censored
    return out


async def run_ours(bench: Bench, sim: SimulatorProcess, args: argparse.Namespace) -> dict[str, Any]:
    system = bench.system(sim.url, V1_MAX_CONCURRENCY="1000", QUEUE_LIMIT="1000000")
    try:
        system.start_gateway()
        system.start_worker("long", name="long", concurrency=args.slots)
        system.start_worker("short", name="short", concurrency=args.slots)
        async with api_client(system.url, connections=32) as client:
            t0 = time.time()
            backlog = [
                {"message": f"long {i} [sim:delay={LONG_DELAY}]", "estimated_seconds": 600}
                for i in range(args.backlog)
            ]
            accepted = await submit_many(client, backlog, concurrency=16)
            queues = {a["queue"] for a in accepted}
            log(NAME, f"ours: {args.backlog} long tasks queued in {time.time() - t0:.1f}s {queues}")
            wait_until(lambda: sim.stats()["active"] >= args.slots, 60, 0.2, "long pool full")
            active_at_start = sim.stats()["active"]
            shorts = []
            for i in range(args.short):
                tag = new_tag("hol-ours")
                body = {
                    "message": f"short {i} [sim:delay=0] [sim:tag={tag}]",
                    "estimated_seconds": 1,
                }
                shorts.append((tag, await submit_one(client, body)))
                await asyncio.sleep(args.spacing)
            ids = [s["task_id"] for _, s in shorts]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                finished = live_states(system.redis_url, ids, "finished_at")
                if all(finished.values()):
                    break
                await asyncio.sleep(0.1)
            final_states = live_states(system.redis_url, ids)
        to_v1: list[float] = []
        to_end: list[float] = []
        for tag, s in shorts:
            records = sim.requests(tag)
            if records:
                to_v1.append(records[0]["started_at"] - s["t_send"])
            if finished.get(s["task_id"]):
                to_end.append(float(finished[s["task_id"]]) - s["t_send"])
        return {
            "queues": sorted(queues),
            "short_queue": sorted({s["queue"] for _, s in shorts}),
            "long_active_when_shorts_sent": active_at_start,
            "short_states": sorted(set(final_states.values())),
            "submit_to_v1_start_ms": describe(to_v1),
            "submit_to_terminal_ms": describe(to_end),
        }
    finally:
        stop_system(system)


def run_baseline(bench: Bench, sim: SimulatorProcess, args: argparse.Namespace) -> dict[str, Any]:
    from bench import plain_celery

    broker = bench.redis_url(bench.new_db())
    worker = plain_celery_worker(
        bench, broker, sim.url, pool="prefork", concurrency=args.slots, name="plain-hol"
    )
    app = plain_celery.configure(broker)
    try:
        t0 = time.time()
        with ThreadPoolExecutor(4) as pool:
            list(
                pool.map(
                    lambda i: plain_celery.call_v1.delay(f"long {i} [sim:delay={LONG_DELAY}]"),
                    range(args.backlog),
                )
            )
        log(NAME, f"baseline: {args.backlog} long tasks queued in {time.time() - t0:.1f}s")
        wait_until(lambda: sim.stats()["active"] >= args.slots, 60, 0.2, "plain pool full")
        active_at_start = sim.stats()["active"]
        shorts = []
        for i in range(args.short):
            tag = new_tag("hol-plain")
            t_send = time.time()
            result = plain_celery.call_v1.delay(f"short {i} [sim:delay=0] [sim:tag={tag}]")
            shorts.append((tag, t_send, result))
            time.sleep(args.spacing)
        deadline = time.time() + args.baseline_wait
        while time.time() < deadline and not all(r.ready() for _, _, r in shorts):
            time.sleep(0.5)
        to_v1: list[float | None] = []
        to_end: list[float | None] = []
        for tag, t_send, result in shorts:
            records = sim.requests(tag)
            to_v1.append(records[0]["started_at"] - t_send if records else None)
            done = result.date_done if result.ready() else None
            to_end.append(done.timestamp() - t_send if done is not None else None)
        waited = time.time() - shorts[0][1]
    finally:
        app.close()
        worker.kill()
    return {
        "long_active_when_shorts_sent": active_at_start,
        "waited_s": round(waited, 1),
        "submit_to_v1_start_ms": censored_stats(to_v1, waited),
        "submit_to_terminal_ms": censored_stats(to_end, waited),
        "expected_wait_s": args.backlog / args.slots * LONG_DELAY,
        "worker": f"celery -A bench.plain_celery worker -P prefork -c {args.slots} (one queue)",
    }


def run_tuned_baseline(
    bench: Bench, sim: SimulatorProcess, args: argparse.Namespace
) -> dict[str, Any]:
    """Celery as a competent user sets it up (bench/plain_celery_tuned.py): `task_routes`
    sends long calls to queue `long` and short ones to `short`, one prefork worker per queue
    with the same slots as ours (-c slots each), a shared httpx.Client per process. Run to
    completion: every short task's wait is measured, none is cut off."""
    from bench import plain_celery_tuned as tuned

    broker = bench.redis_url(bench.new_db())
    workers = [
        plain_celery_worker(
            bench,
            broker,
            sim.url,
            pool="prefork",
            concurrency=args.slots,
            name=f"tuned-hol-{queue}",
            app=tuned.__name__,
            queues=queue,
        )
        for queue in ("long", "short")
    ]
    app = tuned.configure(broker)
    try:
        t0 = time.time()
        with ThreadPoolExecutor(4) as pool:
            list(
                pool.map(
                    lambda i: tuned.call_v1_long.delay(f"long {i} [sim:delay={LONG_DELAY}]"),
                    range(args.backlog),
                )
            )
        log(NAME, f"tuned: {args.backlog} long tasks queued in {time.time() - t0:.1f}s")
        wait_until(lambda: sim.stats()["active"] >= args.slots, 60, 0.2, "tuned pool full")
        active_at_start = sim.stats()["active"]
        shorts = []
        for i in range(args.short):
            tag = new_tag("hol-tuned")
            t_send = time.time()
            result = tuned.call_v1_short.delay(f"short {i} [sim:delay=0] [sim:tag={tag}]")
            shorts.append((tag, t_send, result))
            time.sleep(args.spacing)
        deadline = time.time() + args.tuned_timeout
        while time.time() < deadline and not all(r.ready() for _, _, r in shorts):
            time.sleep(0.1)
        to_v1: list[float | None] = []
        to_end: list[float | None] = []
        for tag, t_send, result in shorts:
            records = sim.requests(tag)
            to_v1.append(records[0]["started_at"] - t_send if records else None)
            done = result.date_done if result.ready() else None
            to_end.append(done.timestamp() - t_send if done is not None else None)
        waited = time.time() - shorts[0][1]
    finally:
        app.close()
        for worker in workers:
            worker.kill()
    return {
        "long_active_when_shorts_sent": active_at_start,
        "waited_s": round(waited, 1),
        "completed": sum(1 for v in to_end if v is not None),
        "submit_to_v1_start_ms": censored_stats(to_v1, waited),
        "submit_to_terminal_ms": censored_stats(to_end, waited),
        "worker": f"celery -A bench.plain_celery_tuned worker -P prefork -c {args.slots} "
        "-Q long, and the same -Q short (task_routes)",
    }


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, f"bench.{NAME}", dict(vars(args)))
    with Bench(NAME) as bench:
        bench.valkey()
        sim = bench.simulator(capacity=2 * args.slots + args.short + 10)
        log(NAME, f"ours: long pool -c {args.slots}, backlog {args.backlog}, {args.short} shorts")
        ours = asyncio.run(run_ours(bench, sim, args))
        log(NAME, f"ours: {ours}")
        base = tuned = None
        if not args.no_baseline:
            sim.reset()
            tuned = run_tuned_baseline(bench, sim, args)
            log(NAME, f"tuned baseline: {tuned}")
            sim.reset()
            base = run_baseline(bench, sim, args)
            log(NAME, f"baseline: {base}")
    report.details = {"ours": ours, "baseline": base, "tuned_baseline": tuned}
    for figure, key in (
        ("submit -> V1 start", "submit_to_v1_start_ms"),
        ("submit -> terminal", "submit_to_terminal_ms"),
    ):
        for stat in ("p50", "p99"):
            b = base[key] if base else {}
            censored = bool(b.get(f"{stat}_censored"))
            note = (
                f"baseline not reached in {base['waited_s']}s (>= lower bound; "
                f"expected ~{base['expected_wait_s']:.0f}s); ratio is an upper bound"
                if censored and base
                else ""
            )
            report.add(
                f"short task {figure} {stat}",
                ours[key][stat],
                "ms",
                baseline=b.get(stat),
                note=note,
            )
    if tuned:
        for figure, key in (
            ("submit -> V1 start", "submit_to_v1_start_ms"),
            ("submit -> terminal", "submit_to_terminal_ms"),
        ):
            for stat in ("p50", "p99"):
                censored = tuned[key][f"{stat}_censored"]
                report.add(
                    f"short task {figure} {stat}, vs tuned Celery (two queues)",
                    ours[key][stat],
                    "ms",
                    baseline=tuned[key][stat],
                    note=f"tuned not done in {tuned['waited_s']}s (lower bound)"
                    if censored
                    else "",
                )
        report.add("tuned baseline short tasks completed", tuned["completed"], f"of {args.short}")
    if base:
        report.add(
            "baseline short tasks started within the wait",
            base["submit_to_v1_start_ms"]["reached"],
            f"of {args.short}",
        )
        report.add("baseline expected wait (backlog/slots x 60 s)", base["expected_wait_s"], "s")
    report.note(
        f"ours: gateway, worker -Q long -c {args.slots}, worker -Q short -c {args.slots}; "
        f"long tasks estimated_seconds=600 [sim:delay={LONG_DELAY}]; shorts estimated_seconds=1 "
        f"[sim:delay=0]. Baseline: one Celery queue, prefork -c {args.slots}, default "
        "settings. Tuned baseline: task_routes to queues long and short, one prefork worker "
        f"-c {args.slots} on each, shared httpx.Client, run until every short task ended. "
        "ratio = ours / baseline."
    )
    return report


def main(argv: list[str] | None = None) -> int:
    return script_main(run, parse_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
