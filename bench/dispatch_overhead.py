"""Issue 5 #2: dispatch overhead on an idle system: client send -> V1 request start.

Tasks are submitted one at a time (the next only after the previous ended), each tagged
`[sim:tag=...]`; the V1 simulator records when each call reached it (`started_at`, unix s,
same clock). Figures: submit -> V1 start p50/p99, plus the submit answer time and submit ->
terminal. Baseline (same run): the textbook Celery setup (`bench/plain_celery.py`, default
prefork worker, Redis broker + result backend, `httpx.post` per call) with the bench process
calling `call_v1.delay()` directly (no HTTP hop in front: favourable to the baseline), and
the tuned one (`bench/plain_celery_tuned.py`: one shared `httpx.Client` per process).

    .venv/bin/python -m bench.dispatch_overhead [--quick] [--tasks 200]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.api import TERMINAL, api_client, live_states, new_tag, submit_one
from bench.measure import describe
from bench.processes import Bench, pause, plain_celery_worker
from bench.report import Report, log, script_main
from v1sim.process import SimulatorProcess

NAME = "dispatch_overhead"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.dispatch_overhead", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", type=int, default=None, help="tasks (default 200, quick 50)")
    parser.add_argument("--gap", type=float, default=0.05, help="idle pause between tasks (s)")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args(argv)
    if args.tasks is None:
        args.tasks = 50 if args.quick else 200
    return args


def sim_record(sim: SimulatorProcess, tag: str, timeout: float = 30.0) -> dict[str, Any]:
    """The (first) finished simulator record of `tag`."""
    deadline = time.monotonic() + timeout
    while True:
        records = sim.requests(tag)
        if records and records[0].get("ended_at"):
            return records[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"no finished V1 call tagged {tag} within {timeout}s")
        pause(0.005)


async def run_ours(bench: Bench, sim: SimulatorProcess, args: argparse.Namespace) -> dict[str, Any]:
    system = bench.system(sim.url, V1_MAX_CONCURRENCY="100", QUEUE_LIMIT="1000000")
    system.start_gateway()
    system.start_worker(concurrency=50)
    to_v1: list[float] = []
    answer: list[float] = []
    to_end: list[float] = []
    async with api_client(system.url, connections=4) as client:
        for i in range(args.tasks + 3):
            tag = new_tag("disp")
            body = {"message": f"dispatch [sim:tag={tag}] [sim:chunks=1]", "estimated_seconds": 1}
            accepted = await submit_one(client, body)
            record = await asyncio.to_thread(sim_record, sim, tag)
            deadline = time.monotonic() + 30
            while True:
                state = live_states(system.redis_url, [accepted["task_id"]])[accepted["task_id"]]
                if state in TERMINAL or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.005)
            ended = time.time()
            if i >= 3:  # the first few warm up connections and code paths
                to_v1.append(record["started_at"] - accepted["t_send"])
                answer.append(accepted["t_done"] - accepted["t_send"])
                to_end.append(ended - accepted["t_send"])
            await asyncio.sleep(args.gap)
    return {
        "submit_to_v1_start_ms": describe(to_v1),
        "submit_answer_ms": describe(answer),
        "submit_to_terminal_ms": describe(to_end),
        "worker": "one gevent worker -c 50 on priority,short,long",
    }


def run_baseline(
    bench: Bench, sim: SimulatorProcess, args: argparse.Namespace, tuned: bool = False
) -> dict[str, Any]:
    """Textbook (`httpx.post` per call) or, `tuned`, one shared `httpx.Client` per process."""
    from bench import plain_celery, plain_celery_tuned

    module: Any = plain_celery_tuned if tuned else plain_celery
    task = plain_celery_tuned.call_v1_tuned if tuned else plain_celery.call_v1
    label = "tuned" if tuned else "plain"
    broker = bench.redis_url(bench.new_db())
    worker = plain_celery_worker(
        bench, broker, sim.url, pool="prefork", name=f"{label}-dispatch", app=module.__name__
    )
    app = module.configure(broker)
    to_v1: list[float] = []
    to_end: list[float] = []
    try:
        for i in range(args.tasks + 3):
            tag = new_tag(label)
            t_send = time.time()
            result = task.delay(f"dispatch [sim:tag={tag}] [sim:chunks=1]")
            record = sim_record(sim, tag)
            result.get(timeout=30)
            ended = time.time()
            if i >= 3:
                to_v1.append(record["started_at"] - t_send)
                to_end.append(ended - t_send)
            time.sleep(args.gap)
    finally:
        app.close()
        worker.stop(5.0)
    return {
        "submit_to_v1_start_ms": describe(to_v1),
        "submit_to_terminal_ms": describe(to_end),
        "worker": f"celery -A {module.__name__} worker (default prefork, 2 processes)",
    }


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, f"bench.{NAME}", dict(vars(args)))
    with Bench(NAME) as bench:
        bench.valkey()
        sim = bench.simulator(capacity=16)
        log(NAME, f"ours: {args.tasks} tasks one at a time")
        ours = asyncio.run(run_ours(bench, sim, args))
        base = tuned = None
        if not args.no_baseline:
            log(NAME, f"baseline: {args.tasks} plain Celery calls one at a time")
            base = run_baseline(bench, sim, args)
            log(NAME, f"tuned baseline: {args.tasks} calls, one shared httpx.Client")
            tuned = run_baseline(bench, sim, args, tuned=True)
    report.details = {"ours": ours, "baseline": base, "tuned_baseline": tuned}
    for label, b in (("", base or {}), (", vs tuned Celery", tuned or {})):
        for stat in ("p50", "p99"):
            report.add(
                f"submit -> V1 request start {stat}{label}",
                ours["submit_to_v1_start_ms"][stat],
                "ms",
                baseline=b.get("submit_to_v1_start_ms", {}).get(stat),
            )
        for stat in ("p50", "p99"):
            report.add(
                f"submit -> terminal {stat}{label}",
                ours["submit_to_terminal_ms"][stat],
                "ms",
                baseline=b.get("submit_to_terminal_ms", {}).get(stat),
                note="ours: live state polled every 5 ms; base: AsyncResult.get()",
            )
    report.add("submit answer (202) p99", ours["submit_answer_ms"]["p99"], "ms")
    report.note(
        "ours: gateway + one gevent worker (-c 50), client sends POST /v1/tasks; baseline: "
        "bench/plain_celery.py default prefork worker, the bench calls call_v1.delay() itself "
        "(no HTTP gateway hop); tuned baseline: the same with one shared httpx.Client per "
        "process (bench/plain_celery_tuned.py); V1 start = simulator record started_at; "
        "ratio = ours / baseline"
    )
    return report


def main(argv: list[str] | None = None) -> int:
    return script_main(run, parse_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
