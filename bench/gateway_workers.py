"""Issue 13: max sustained submits with GATEWAY_WORKERS=1 and 2, against the bare endpoint.

One fresh Valkey; the bare one-LPUSH app (`bench/baseline_app.py`, one process) and the
gateway (`python -m app`) with each worker count in turn, no Celery worker (tasks stay
queued; no queue or tenant limit refuses). Each phase is a closed loop of
--closed-concurrency clients (`bench.loadgen`) after a warm-up; figures: submits/s, p99,
and server CPU per submit over the whole process tree (uvicorn's supervisor + workers).
The load generator shares the machine's cores with the servers: on 2 cores a second
worker competes with it and Valkey, so the gain shown is a floor.

    .venv/bin/python -m bench.gateway_workers [--quick] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench import loadgen
from bench.api import AUTH
from bench.measure import ProcWatch
from bench.processes import Bench
from bench.report import Report, log, script_main
from bench.submit_latency import BODY, settle, start_baseline

NAME = "gateway_workers"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter phases")
    parser.add_argument("--workers", default="1,2", help="GATEWAY_WORKERS values to run")
    parser.add_argument("--closed-concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=None, help="seconds per phase")
    args = parser.parse_args(argv)
    args.worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    if args.seconds is None:
        args.seconds = 4.0 if args.quick else 8.0
    return args


async def closed_phase(url: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    pool = loadgen.Pool(host, int(port), limit=512)
    request = loadgen.build_request(host, int(port), "/v1/tasks", BODY, AUTH)
    watch = ProcWatch(pid)  # the tree: uvicorn's supervising process and its workers
    try:
        warm = await loadgen.open_loop(pool, request, 100, 1.5, 10.0)
        if warm.ok == 0:
            raise RuntimeError(f"{url}: warm-up failed: {dict(warm.errors)}")
        await settle({"server": watch})
        cpu0 = watch.cpu()
        phase = await loadgen.closed_loop(pool, request, args.closed_concurrency, args.seconds)
        summary = phase.summary()
        summary["server_cpu_ms_per_submit"] = (
            round(1000 * (watch.cpu() - cpu0) / phase.ok, 3) if phase.ok else None
        )
        return summary
    finally:
        pool.close()


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, f"bench.{NAME}", dict(vars(args)))
    results: dict[str, Any] = {}
    with Bench(NAME) as bench:
        bench.valkey()
        base_url, base_pid = start_baseline(bench, bench.redis_url(bench.new_db()))
        results["baseline"] = asyncio.run(closed_phase(base_url, base_pid, args))
        log(NAME, f"baseline: {results['baseline']['achieved_rate']}/s")
        for workers in args.worker_counts:
            system = bench.system(
                "http://127.0.0.1:9",
                QUEUE_LIMIT="1000000",
                TENANT_MAX_QUEUED="1000000",
                TENANT_RATE_PER_SECOND="0",
                GATEWAY_WORKERS=str(workers),
            )
            gateway = system.start_gateway(ready_path="/healthz")  # no V1 here: not /readyz
            time.sleep(1.0 * workers)  # /healthz answers once one worker is up; let all start
            results[f"workers={workers}"] = asyncio.run(closed_phase(system.url, gateway.pid, args))
            log(NAME, f"{workers} worker(s): {results[f'workers={workers}']['achieved_rate']}/s")
            gateway.stop()
    report.details = results
    base = results["baseline"]
    one = results.get("workers=1")
    for workers in args.worker_counts:
        ours = results[f"workers={workers}"]
        note = f"{args.closed_concurrency} clients, p99 {ours['latency_ms']['p99']} ms"
        report.add(f"max sustained submits/s, GATEWAY_WORKERS={workers}", ours["achieved_rate"],
                   "1/s", baseline=base["achieved_rate"], note=note)  # fmt: skip
        report.add(f"server CPU per submit, GATEWAY_WORKERS={workers}",
                   ours["server_cpu_ms_per_submit"], "ms",
                   baseline=base["server_cpu_ms_per_submit"])  # fmt: skip
        if one and workers > 1:
            report.add(f"submits/s with {workers} workers / with 1", ours["achieved_rate"], "1/s",
                       baseline=one["achieved_rate"])  # fmt: skip
    report.note(
        "baseline = bench/baseline_app.py (one process, one LPUSH), same loadgen and Valkey; "
        "ratio = ours / baseline; no Celery worker (tasks stay queued)"
    )
    return report


def main(argv: list[str] | None = None) -> int:
    return script_main(run, parse_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
