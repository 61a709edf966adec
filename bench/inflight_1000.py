"""Issue 5 #3: 1000 tasks in flight at once, each a 30 s V1 call.

Simulator capacity = tasks; V1_MAX_CONCURRENCY = tasks; gateway + maintenance + two gevent
workers on `short` (-c 500 each by default). All tasks (`[sim:delay=30]`,
`estimated_seconds: 30`) are submitted at once; while they run, 200 probe submits are sent
at a fixed rate (open loop) to measure submit latency under load. Probes go to the `long`
queue, which no worker serves, so they never add V1 load.

Figures: tasks completed and wall time (first submit -> last finished), simulator
peak_active, worker RSS peak (each worker and their sum), submit p50/p99 of the burst and
of the probes while loaded, gateway RSS peak.

    .venv/bin/python -m bench.inflight_1000 [--quick] [--tasks 1000 --delay 30]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx

from bench.api import api_client, fetch_tasks, iso_to_unix, new_tag, submit_many, wait_all_terminal
from bench.measure import ProcWatch, Sampler, describe, mib
from bench.processes import Bench
from bench.report import Report, log, script_main

NAME = "inflight_1000"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.inflight_1000", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 tasks of 10 s")
    parser.add_argument("--tasks", type=int, default=None)
    parser.add_argument("--delay", type=float, default=None, help="V1 seconds per task")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=None, help="-c per worker")
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument(
        "--probe-rate",
        type=float,
        default=None,
        help="probe submits per s (default: all probes within the first half of --delay)",
    )
    parser.add_argument("--timeout", type=float, default=None, help="s to wait past --delay")
    args = parser.parse_args(argv)
    if args.tasks is None:
        args.tasks = 200 if args.quick else 1000
    if args.delay is None:
        args.delay = 10.0 if args.quick else 30.0
    if args.worker_concurrency is None:
        args.worker_concurrency = -(-args.tasks // args.workers)
    if args.probe_rate is None:
        args.probe_rate = round(args.probes / (0.5 * args.delay), 1)
    if args.timeout is None:
        args.timeout = 90.0
    return args


async def probe(client: httpx.AsyncClient, count: int, rate: float) -> list[float]:
    """Open loop: probe i is scheduled at start + i/rate; latency from that time."""
    clock = time.perf_counter
    start = clock()
    latencies: list[float] = []

    async def one(scheduled: float) -> None:
        body = {"message": "probe [sim:delay=0]", "estimated_seconds": 600}
        response = await client.post("/v1/tasks", json=body)
        if response.status_code == 202:
            latencies.append(clock() - scheduled)

    tasks = []
    for i in range(count):
        scheduled = start + i / rate
        if scheduled > clock():
            await asyncio.sleep(scheduled - clock())
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    return latencies


async def scenario(bench: Bench, args: argparse.Namespace) -> dict[str, Any]:
    sim = bench.simulator(capacity=args.tasks + 50)
    system = bench.system(
        sim.url,
        V1_MAX_CONCURRENCY=str(args.tasks),
        QUEUE_LIMIT="1000000",
        LEASE_SECONDS="15",
        WORKER_CONCURRENCY=str(args.worker_concurrency),
    )
    system.start_gateway()
    system.start_maintenance()
    workers = [
        system.start_worker("short", name=f"short{i}", concurrency=args.worker_concurrency)
        for i in range(args.workers)
    ]
    assert system.gateway is not None
    watches = {f"worker{i}": ProcWatch(w.pid) for i, w in enumerate(workers)}
    watches["gateway"] = ProcWatch(system.gateway.pid)
    tag = new_tag("inflight")
    bodies = [
        {
            "message": f"run {i} [sim:delay={args.delay:g}] [sim:tag={tag}]",
            "estimated_seconds": 30,
        }
        for i in range(args.tasks)
    ]
    with Sampler(watches, interval=0.5) as sampler:
        rss_idle = {n: w.rss() for n, w in watches.items()}
        async with api_client(system.url, connections=64) as client:
            t0 = time.time()
            accepted = await submit_many(client, bodies, concurrency=32)
            submitted_in = time.time() - t0
            log(NAME, f"{args.tasks} tasks submitted in {submitted_in:.1f}s")
            ids = [a["task_id"] for a in accepted]
            active_before_probes = sim.stats()["active"]
            probe_lat = await probe(client, args.probes, args.probe_rate)
            active_after_probes = sim.stats()["active"]
            log(NAME, f"probes done; V1 active now {active_after_probes}")
            ok, _ = await asyncio.to_thread(
                wait_all_terminal, system.redis_url, ids, args.delay + args.timeout, 0.5
            )
            final = await fetch_tasks(client, ids)
    states: dict[str, int] = {}
    for task in final.values():
        states[task.get("state", "missing")] = states.get(task.get("state", "missing"), 0) + 1
    finished = [iso_to_unix(t.get("finished_at")) for t in final.values()]
    started = [iso_to_unix(t.get("started_at")) for t in final.values()]
    finished_ok = [f for f in finished if f]
    last = max(finished_ok) if finished_ok else None
    stats = sim.stats()
    records = sim.requests(tag)
    worker_names = [n for n in watches if n.startswith("worker")]
    return {
        "tasks": args.tasks,
        "delay_s": args.delay,
        "all_terminal": ok,
        "states": states,
        "succeeded": states.get("succeeded", 0),
        "wall_s": round(last - t0, 2) if last else None,
        "submit_burst_s": round(submitted_in, 2),
        "start_spread_s": round(max(filter(None, started)) - min(filter(None, started)), 2)
        if any(started)
        else None,
        "v1_calls": len(records),
        "sim_peak_active": stats["peak_active"],
        "sim_stats": stats,
        "active_before_probes": active_before_probes,
        "active_after_probes": active_after_probes,
        "submit_burst_ms": describe([a["t_done"] - a["t_send"] for a in accepted]),
        "probe_submit_ms": describe(probe_lat),
        "rss_idle_mib": {n: mib(v) for n, v in rss_idle.items()},
        "rss_peak_mib": {n: mib(sampler.peak_rss(n)) for n in watches},
        "workers_rss_peak_sum_mib": mib(sampler.total_peak_rss(worker_names)),
        "worker_cpu_s": {
            n: round(sampler.series[n][-1][2] - sampler.series[n][0][2], 2) for n in worker_names
        },
    }


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, f"bench.{NAME}", dict(vars(args)))
    with Bench(NAME) as bench:
        bench.valkey()
        result = asyncio.run(scenario(bench, args))
    report.details = result
    log(NAME, str(result))
    report.add(
        "tasks succeeded",
        result["succeeded"],
        f"of {args.tasks}",
        note=f"states {result['states']}",
    )
    report.add(
        "wall time first submit -> last finished",
        result["wall_s"],
        "s",
        note=f"each V1 call {args.delay:g} s; submit burst {result['submit_burst_s']} s",
    )
    report.add("simulator peak_active", result["sim_peak_active"], "runs")
    peaks = result["rss_peak_mib"]
    report.add(
        "worker RSS peak (sum of workers)",
        result["workers_rss_peak_sum_mib"],
        "MiB",
        note=", ".join(f"{n} {v}" for n, v in peaks.items() if n.startswith("worker")),
    )
    report.add("gateway RSS peak", peaks["gateway"], "MiB")
    report.add(
        "submit p50 (burst of all tasks)",
        result["submit_burst_ms"]["p50"],
        "ms",
        note="32 concurrent submitters",
    )
    report.add("submit p99 (burst of all tasks)", result["submit_burst_ms"]["p99"], "ms")
    report.add(
        f"probe submit p50 while loaded ({args.probe_rate:g}/s)",
        result["probe_submit_ms"]["p50"],
        "ms",
    )
    report.add(
        f"probe submit p99 while loaded ({args.probe_rate:g}/s)",
        result["probe_submit_ms"]["p99"],
        "ms",
        note=f"V1 runs active: {result['active_before_probes']} before probes, "
        f"{result['active_after_probes']} after",
    )
    report.note(
        f"{args.workers} gevent workers -Q short -c {args.worker_concurrency}, maintenance, "
        f"simulator capacity {args.tasks + 50}, V1_MAX_CONCURRENCY={args.tasks}, "
        "LEASE_SECONDS=15; probes are accepted into the unserved long queue"
    )
    return report


def main(argv: list[str] | None = None) -> int:
    return script_main(run, parse_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
