"""Issue 5 #5: worker CPU seconds per task, ours against the textbook Celery worker.

Ours: one gevent worker (`-c 50`, all queues) runs N instant tasks (`[sim:chunks=1]`)
submitted through the gateway. Baseline (same run, same simulator): `celery -A
bench.plain_celery worker` with default settings (prefork, one process per core, Redis
broker + result backend, `httpx.post` with a new client per call) runs the same N calls
sent with `call_v1.delay()`; tuned baseline: the same worker with one shared
`httpx.Client` per process (`bench/plain_celery_tuned.py`), as a competent user would.
CPU = utime+stime of the worker process tree (prefork: parent
+ children) between just before the first submit and the moment the last task ended, / N.
Also shown: the same minus the worker's idle CPU rate over that window, and Valkey CPU.
Ours and the tuned baseline, the target, run in alternating rounds (`--rounds`, default 2;
each figure is the mean of its rounds): this shared machine's speed drifts over a minute,
and a single pair measured one after the other took the drift as a difference.

    .venv/bin/python -m bench.worker_cpu [--quick] [--tasks 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from celery import Celery

from bench.api import api_client, new_tag, submit_many, wait_all_terminal
from bench.measure import ProcWatch
from bench.processes import Bench, plain_celery_worker, stop_system
from bench.report import Report, log, script_main
from testbed import ManagedProcess
from v1sim.process import SimulatorProcess

NAME = "worker_cpu"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.worker_cpu", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", type=int, default=None, help="default 1000, quick 200")
    parser.add_argument("--concurrency", type=int, default=50, help="our worker's -c")
    parser.add_argument("--idle-seconds", type=float, default=3.0)
    parser.add_argument("--timeout", type=float, default=150.0)
    parser.add_argument(
        "--rounds", type=int, default=None, help="ours/tuned pairs (default 2, quick 1)"
    )
    args = parser.parse_args(argv)
    if args.tasks is None:
        args.tasks = 200 if args.quick else 1000
    if args.rounds is None:
        args.rounds = 1 if args.quick else 2
    return args


def idle_rate(watch: ProcWatch, seconds: float) -> float:
    cpu0 = watch.cpu()
    time.sleep(seconds)
    return (watch.cpu() - cpu0) / seconds


def cpu_figures(
    n: int, worker: tuple[float, float], valkey: tuple[float, float], wall: float, idle: float
) -> dict[str, Any]:
    used = worker[1] - worker[0]
    return {
        "tasks": n,
        "wall_s": round(wall, 2),
        "worker_cpu_s": round(used, 3),
        "worker_ms_per_task": round(1000 * used / n, 3),
        "worker_idle_cpu_pct": round(100 * idle, 2),
        "worker_ms_per_task_idle_corrected": round(1000 * (used - idle * wall) / n, 3),
        "valkey_ms_per_task": round(1000 * (valkey[1] - valkey[0]) / n, 3),
    }


async def run_ours(bench: Bench, sim: SimulatorProcess, args: argparse.Namespace) -> dict[str, Any]:
    system = bench.system(sim.url, V1_MAX_CONCURRENCY="1000", QUEUE_LIMIT="1000000")
    system.start_gateway()
    worker = system.start_worker(concurrency=args.concurrency)
    assert system.gateway is not None
    watch, gateway, valkey = ProcWatch(worker.pid), ProcWatch(system.gateway.pid), _valkey(bench)
    # One task first so every lazy import / connection of the worker is paid before measuring.
    async with api_client(system.url, connections=16) as client:
        warm = await submit_many(client, [{"message": "warm [sim:chunks=1]"}] * 3)
        wait_all_terminal(system.redis_url, [w["task_id"] for w in warm], 30, 0.1)
        idle = idle_rate(watch, args.idle_seconds)
        tag = new_tag("cpu-ours")
        bodies = [
            {"message": f"cpu {i} [sim:chunks=1] [sim:tag={tag}]", "estimated_seconds": 1}
            for i in range(args.tasks)
        ]
        w0, v0, g0, t0 = watch.cpu(), valkey.cpu(), gateway.cpu(), time.time()
        accepted = await submit_many(client, bodies, concurrency=16)
        ok, states = await asyncio.to_thread(
            wait_all_terminal, system.redis_url, [a["task_id"] for a in accepted], args.timeout, 0.1
        )
        w1, v1, g1, t1 = watch.cpu(), valkey.cpu(), gateway.cpu(), time.time()
    figures = cpu_figures(args.tasks, (w0, w1), (v0, v1), t1 - t0, idle)
    figures["all_terminal"] = ok
    figures["succeeded"] = sum(1 for s in states.values() if s == "succeeded")
    figures["gateway_ms_per_task"] = round(1000 * (g1 - g0) / args.tasks, 3)
    figures["worker"] = f"celery -A tasks worker -P gevent -c {args.concurrency} (tests.harness)"
    stop_system(system)  # an idle system left running would add to the next round's CPU
    return figures


def mean_of_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One side's figures: each number the mean of its rounds (`succeeded` their sum), the
    rounds themselves under `rounds`."""
    out: dict[str, Any] = dict(rounds[0])
    for key, value in rounds[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = round(sum(r[key] for r in rounds) / len(rounds), 3)
    out["succeeded"] = sum(r["succeeded"] for r in rounds)
    if "all_terminal" in rounds[0]:  # ours only
        out["all_terminal"] = all(r["all_terminal"] for r in rounds)
    out["rounds"] = [r["worker_ms_per_task"] for r in rounds]
    return out


def run_baseline(
    bench: Bench,
    sim: SimulatorProcess,
    args: argparse.Namespace,
    tuned: bool = False,
    events: bool = False,
) -> dict[str, Any]:
    """The textbook worker (`httpx.post` per call) or, `tuned`, the same worker with one
    shared `httpx.Client` per process (bench/plain_celery_tuned.py); `events`: with `-E`
    (task events, which Flower needs and ours sends)."""
    from bench import plain_celery, plain_celery_tuned

    module: Any = plain_celery_tuned if tuned else plain_celery
    task_name = "plain.call_v1_tuned" if tuned else "plain.call_v1"
    label = ("tuned" if tuned else "plain") + ("-events" if events else "")
    broker = bench.redis_url(bench.new_db())
    proc: ManagedProcess = plain_celery_worker(
        bench, broker, sim.url, name=f"{label}-cpu", app=module.__name__,
        extra=("-E",) if events else (),
    )  # fmt: skip
    # A client app of this run's own: a closed one cannot fetch results again.
    app = Celery(f"bench-{label}", broker=broker, backend=broker)

    def send(message: str) -> Any:
        return app.send_task(task_name, args=[message])

    watch, valkey = ProcWatch(proc.pid), _valkey(bench)
    try:
        send("warm [sim:chunks=1]").get(timeout=30)
        send("warm [sim:chunks=1]").get(timeout=30)
        idle = idle_rate(watch, args.idle_seconds)
        tag = new_tag(f"cpu-{label}")
        w0, v0, t0 = watch.cpu(), valkey.cpu(), time.time()
        with ThreadPoolExecutor(4) as pool:
            results = list(
                pool.map(
                    lambda i: send(f"cpu {i} [sim:chunks=1] [sim:tag={tag}]"),
                    range(args.tasks),
                )
            )
        deadline = time.monotonic() + args.timeout
        done = 0
        for result in results:
            try:
                result.get(timeout=max(deadline - time.monotonic(), 0.1))
                done += 1
            except Exception:
                pass
        w1, v1, t1 = watch.cpu(), valkey.cpu(), time.time()
        children = len(watch.proc.children(recursive=True))
    finally:
        app.close()
        proc.stop(5.0)
    figures = cpu_figures(args.tasks, (w0, w1), (v0, v1), t1 - t0, idle)
    figures["succeeded"] = done
    options = " -E" if events else ""
    figures["worker"] = (
        f"celery -A {module.__name__} worker{options} (prefork, {children} children)"
    )
    return figures


def _valkey(bench: Bench) -> ProcWatch:
    pid = bench.valkey_pid()
    assert pid is not None
    return ProcWatch(pid, tree=False)


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, f"bench.{NAME}", dict(vars(args)))
    with Bench(NAME) as bench:
        bench.valkey()
        sim = bench.simulator(capacity=200)
        ours_rounds: list[dict[str, Any]] = []
        tuned_rounds: list[dict[str, Any]] = []
        for round_no in range(1, args.rounds + 1):
            log(NAME, f"round {round_no}, ours: {args.tasks} instant tasks")
            ours_rounds.append(asyncio.run(run_ours(bench, sim, args)))
            log(NAME, f"ours: {ours_rounds[-1]}")
            log(NAME, f"round {round_no}, tuned baseline: {args.tasks} Celery calls, one "
                      "shared httpx.Client")  # fmt: skip
            tuned_rounds.append(run_baseline(bench, sim, args, tuned=True))
            log(NAME, f"tuned baseline: {tuned_rounds[-1]}")
        ours, tuned = mean_of_rounds(ours_rounds), mean_of_rounds(tuned_rounds)
        log(NAME, f"baseline: {args.tasks} plain Celery calls")
        base = run_baseline(bench, sim, args)
        log(NAME, f"baseline: {base}")
        log(NAME, f"tuned baseline with task events (-E): {args.tasks} Celery calls")
        evented = run_baseline(bench, sim, args, tuned=True, events=True)
        log(NAME, f"tuned baseline with task events: {evented}")
    report.details = {
        "ours": ours, "baseline": base, "tuned_baseline": tuned, "tuned_events_baseline": evented,
    }  # fmt: skip
    compared = (
        ("textbook Celery", base),
        ("tuned Celery: shared httpx.Client", tuned),
        ("tuned Celery with task events (-E, as Flower needs)", evented),
    )
    for label, b in compared:
        rounds = ""
        if args.rounds > 1:
            rounds = f"; mean of {args.rounds} rounds: ours {ours['rounds']}"
            if b is tuned:
                rounds += f", tuned {tuned['rounds']}"
        report.add(
            f"worker CPU per task, vs {label}",
            ours["worker_ms_per_task"],
            "ms",
            baseline=b["worker_ms_per_task"],
            note=f"ours {ours['succeeded']}/{args.tasks * args.rounds} succeeded, base "
            f"{b['succeeded']}{rounds}",
        )
        report.add(
            f"worker CPU per task, idle CPU subtracted, vs {label}",
            ours["worker_ms_per_task_idle_corrected"],
            "ms",
            baseline=b["worker_ms_per_task_idle_corrected"],
            note=f"idle: ours {ours['worker_idle_cpu_pct']}%, base {b['worker_idle_cpu_pct']}%",
        )
        report.add(
            f"Valkey CPU per task, vs {label}",
            ours["valkey_ms_per_task"],
            "ms",
            baseline=b["valkey_ms_per_task"],
        )
    report.add(
        "gateway CPU per task (submit side)",
        ours["gateway_ms_per_task"],
        "ms",
        note="baseline has no gateway (bench calls .delay())",
    )
    report.add("wall time for all tasks", ours["wall_s"], "s", baseline=base["wall_s"])
    report.add(
        "wall time for all tasks, vs tuned Celery", ours["wall_s"], "s", baseline=tuned["wall_s"]
    )
    report.note(
        f"ours: {ours['worker']}; baseline: {base['worker']}, default settings; tuned "
        f"baseline: {tuned['worker']}, default settings + one httpx.Client per process; "
        f"tuned with events: {evented['worker']}; ours sends task events too (Flower); "
        "ratio = ours / baseline"
    )
    return report


def main(argv: list[str] | None = None) -> int:
    return script_main(run, parse_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
