"""Issue 8: a flooding tenant against another tenant's new work (weighted fair share).

Tenant A submits a backlog (default 2,000 tasks of `[sim:delay=0.25]`), then tenant B
submits 20 tasks. Figure: B's wait from its submit to V1 starting its call, p50 / max.
V1 budget 8 slots (simulator capacity 8), one worker on all queues.

Baseline (same run, same code): `FAIR_SHARE=false`, one shared line by priority then age,
i.e. first come, first served. There B waits behind A's backlog (backlog / 8 x 0.25 s); the
run stops after --baseline-wait seconds, and B tasks not started by then count at that
wait (a lower bound, marked censored).

    .venv/bin/python -m bench.fairness [--quick] [--backlog 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.api import api_client, new_tag, submit_many, submit_one
from bench.measure import describe
from bench.processes import Bench, stop_system
from bench.report import Report, log, script_main
from testbed import OTHER_API_KEY, wait_until
from v1sim.process import SimulatorProcess

NAME = "fairness"
SLOTS = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fairness", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--backlog", type=int, default=None, help="A's tasks (2000; quick 300)")
    parser.add_argument("--late", type=int, default=20, help="B's tasks")
    parser.add_argument("--delay", type=float, default=0.25, help="seconds per V1 call")
    parser.add_argument("--baseline-wait", type=float, default=None, help="s (90; quick 30)")
    args = parser.parse_args(argv)
    if args.backlog is None:
        args.backlog = 300 if args.quick else 2000
    if args.baseline_wait is None:
        args.baseline_wait = 30.0 if args.quick else 90.0
    return args


async def one_run(
    bench: Bench, sim: SimulatorProcess, args: argparse.Namespace, fair: bool
) -> dict[str, Any]:
    system = bench.system(
        sim.url,
        V1_MAX_CONCURRENCY=str(SLOTS),
        FAIR_SHARE="true" if fair else "false",
        TENANT_RATE_PER_SECOND="0",
        TENANT_MAX_QUEUED="1000000",
        QUEUE_LIMIT="1000000",
    )
    try:
        system.start_gateway()
        system.start_worker()
        flood = [{"message": f"a {i} [sim:delay={args.delay}]"} for i in range(args.backlog)]
        async with api_client(system.url, connections=32) as a_client:
            t0 = time.time()
            await submit_many(a_client, flood, concurrency=16)
        log(NAME, f"fair={fair}: {args.backlog} A tasks accepted in {time.time() - t0:.1f}s")
        wait_until(lambda: sim.stats()["active"] >= SLOTS, 60, 0.1, "V1 slots busy")
        tag = new_tag("fair" if fair else "fifo")
        async with api_client(system.url, connections=8, api_key=OTHER_API_KEY) as b_client:
            late = [await submit_one(b_client, {"message": f"b {i} [sim:tag={tag}]"})
                    for i in range(args.late)]  # fmt: skip
        log(NAME, f"fair={fair}: B's first task {late[0]['task_id']} in {late[0]['queue']}")
        limit = 60.0 if fair else args.baseline_wait
        await asyncio.to_thread(_wait_started, sim, tag, args.late, limit)
        started = sorted(r["admitted_at"] for r in sim.requests(tag))
        sent = [s["t_send"] for s in late]
        waited = time.time() - sent[0]
        waits = [a - s for a, s in zip(started, sent, strict=False)]
        censored = args.late - len(waits)
        waits += [waited] * censored
        return {
            "b_first_wait_ms": round(1000 * waits[0], 1),
            "b_wait_ms": describe(waits),
            "b_not_started": censored,
            "waited_s": waited,
        }
    finally:
        stop_system(system)


def _wait_started(sim: SimulatorProcess, tag: str, count: int, limit: float) -> None:
    """Until V1 has started `count` calls tagged `tag`, or `limit` seconds (then censored)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline and len(sim.requests(tag)) < count:
        time.sleep(0.2)


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, f"bench.{NAME}", dict(vars(args)))
    with Bench(NAME) as bench:
        bench.valkey()
        sim = bench.simulator(capacity=SLOTS)
        ours = asyncio.run(one_run(bench, sim, args, fair=True))
        log(NAME, f"fair share: {ours}")
        sim.reset()
        base = asyncio.run(one_run(bench, sim, args, fair=False))
        log(NAME, f"FIFO: {base}")
    report.details = {"fair_share": ours, "fifo": base}
    report.add("B's first task: submit -> V1 start", ours["b_first_wait_ms"], "ms",
               baseline=base["b_first_wait_ms"])  # fmt: skip
    for stat in ("p50", "max"):
        report.add(f"B's wait submit -> V1 start {stat}", ours["b_wait_ms"][stat], "ms",
                   baseline=base["b_wait_ms"][stat],
                   note="baseline censored" if base["b_not_started"] else "")  # fmt: skip
    report.add("B tasks not started within the FIFO wait", base["b_not_started"],
               f"of {args.late}")  # fmt: skip
    report.note(
        f"V1 budget {SLOTS} slots (simulator capacity {SLOTS}), A: {args.backlog} tasks of "
        f"{args.delay}s submitted first, then B: {args.late}. Ours: FAIR_SHARE=true; "
        "baseline: FAIR_SHARE=false (one shared line, first come first served). "
        "ratio = ours / baseline."
    )
    return report


def main(argv: list[str] | None = None) -> int:
    return script_main(run, parse_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
