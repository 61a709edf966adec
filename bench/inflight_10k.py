"""Issue 13: 10,000 tasks in flight on this box, each a 60 s V1 call.

Simulator capacity = V1_MAX_CONCURRENCY (V1 budget) = tasks. Gateway + maintenance +
--workers gevent workers on `short` (`-c` = tasks / workers, default one process per 1,000
greenlets: the worker's V1 connection pool holds 1,000). All tasks (`[sim:delay=60]`) are
submitted as fast as the gateway answers (--submitters keep-alive connections of
`bench.loadgen`, cheap on the client side so the burst ends well inside one V1 call and all
tasks are in flight at once); then, once 95 % of them run in V1 (or when the probes would
otherwise outlast the first runs), --probes probe submits are sent at --probe-rate (open
loop, to the `long` queue no worker serves, so they add no V1 load), from a process of
their own.

Figures, each against its target: tasks succeeded (all), simulator peak concurrent runs,
each worker process's peak RSS (sampled every second; target < 500 MB), probe submit p50/p99
while loaded (target p99 < 50 ms), the worker processes and greenlets it took, submit burst
time, wall time. Whatever happens (a refusal, a worker dying, the deadline) the run ends
with the figures it has and says which targets were missed.

    .venv/bin/python -m bench.inflight_10k [--quick] [--tasks 10000 --delay 60 --workers 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import time
import traceback
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any

import redis

from bench import loadgen
from bench.api import AUTH, live_states, new_tag, wait_all_terminal
from bench.crash_tools import overlaps
from bench.measure import ProcWatch, Sampler, describe, mib
from bench.processes import Bench, pause
from bench.report import Report, log, script_main
from taskrecord import keys
from testbed import System
from v1sim.process import SimulatorProcess

NAME = "inflight_10k"
RSS_TARGET_MB = 500.0
PROBE_P99_TARGET_MS = 50.0
GREENLETS_PER_WORKER = 1000  # tasks/v1_client.py: a worker's V1 pool holds 1,000 connections


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.inflight_10k", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 tasks of 30 s")
    parser.add_argument("--tasks", type=int, default=None, help="10000; quick 2000")
    parser.add_argument("--delay", type=float, default=None, help="V1 s per task (60; quick 30)")
    parser.add_argument("--workers", type=int, default=None, help="default tasks / 1000")
    parser.add_argument("--submitters", type=int, default=32, help="concurrent submits")
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--probe-rate", type=float, default=20.0, help="probe submits per s")
    parser.add_argument("--timeout", type=float, default=240.0, help="s to wait past --delay")
    args = parser.parse_args(argv)
    if args.tasks is None:
        args.tasks = 2000 if args.quick else 10_000
    if args.delay is None:
        args.delay = 30.0 if args.quick else 60.0
    if args.workers is None:
        args.workers = max(1, -(-args.tasks // GREENLETS_PER_WORKER))
    args.worker_concurrency = -(-args.tasks // args.workers)
    return args


async def burst(url: str, body: dict[str, Any], count: int, submitters: int) -> dict[str, Any]:
    """Submit `count` tasks over `submitters` keep-alive connections; a refusal (429/503) is
    retried after a short pause and counted. Returns ids, latencies and errors."""
    host, port = url.removeprefix("http://").split(":")
    pool = loadgen.Pool(host, int(port), limit=submitters)
    request = loadgen.build_request(host, int(port), "/v1/tasks", body, AUTH)
    ids: list[str] = []
    latencies: list[float] = []
    errors: dict[str, int] = {}
    remaining = count
    clock = time.perf_counter

    async def submitter() -> None:
        nonlocal remaining
        conn = await pool.acquire()
        try:
            while remaining > 0:
                remaining -= 1
                for _attempt in range(50):
                    t0 = clock()
                    try:
                        status, payload = await asyncio.wait_for(
                            loadgen.roundtrip(conn, request), 60
                        )
                    except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                        errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                        pool.discard(conn)
                        conn = await pool.acquire()
                        continue
                    if status == 202:
                        latencies.append(clock() - t0)
                        ids.append(json.loads(payload)["task_id"])
                        break
                    errors[f"http_{status}"] = errors.get(f"http_{status}", 0) + 1
                    await asyncio.sleep(0.2)
        finally:
            pool.release(conn)

    try:
        await asyncio.gather(*(submitter() for _ in range(submitters)))
    finally:
        pool.close()
    return {"ids": ids, "latency_ms": describe(latencies), "errors": errors}


async def probes(url: str, count: int, rate: float) -> dict[str, Any]:
    host, port = url.removeprefix("http://").split(":")
    pool = loadgen.Pool(host, int(port), limit=64)
    body = {"message": "probe [sim:delay=0]", "estimated_seconds": 600}  # -> unserved `long`
    request = loadgen.build_request(host, int(port), "/v1/tasks", body, AUTH)
    try:
        phase = await loadgen.open_loop(pool, request, rate, count / rate, 10.0)
    finally:
        pool.close()
    return phase.summary()


def _probe_process(url: str, count: int, rate: float, out: Connection) -> None:
    out.send(asyncio.run(probes(url, count, rate)))
    out.close()


def probes_apart(url: str, count: int, rate: float) -> dict[str, Any]:
    """`probes` in a process of its own. In this one the sampler thread reads /proc for
    every watched process each second (tens of ms of Python), holding the GIL that the
    probes' event loop needs: their latencies would include waiting for it."""
    ctx = multiprocessing.get_context("spawn")  # no fork of a process with threads
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_probe_process, args=(url, count, rate, sender), daemon=True)
    proc.start()
    sender.close()
    deadline = time.time() + count / rate + 60.0
    try:
        while not receiver.poll(0.5):
            if not proc.is_alive() or time.time() > deadline:
                raise RuntimeError(f"the probe process ended without figures ({proc.exitcode})")
            pause(0)  # SIGTERM: stop now
        result: dict[str, Any] = receiver.recv()
        return result
    finally:
        proc.join(5)
        if proc.is_alive():
            proc.kill()


def wait_loaded(sim: SimulatorProcess, args: argparse.Namespace, t0: float) -> None:
    """Probe at the most load: once 95 % of the tasks run in V1, or when the probes would
    otherwise end after the first tasks finish (the ramp may be slower than the burst)."""
    latest = t0 + args.delay - args.probes / args.probe_rate - 5.0
    while sim.stats()["active"] < 0.95 * args.tasks and time.time() < latest:
        pause(0.5)


def valkey_clients(redis_url: str) -> int | None:
    """Valkey's connected clients (its maxclients is 10,000 unless raised)."""
    client = redis.Redis.from_url(redis_url)
    try:
        return int(client.info("clients")["connected_clients"])
    except redis.RedisError:
        return None
    finally:
        client.close()


def start_workers(system: System, args: argparse.Namespace) -> list[Any]:
    """One after the other, from this (main) thread: testbed children die with the thread
    that started them (PR_SET_PDEATHSIG), so a pool thread would take its worker with it."""
    return [
        system.start_worker("short", name=f"short{i}", concurrency=args.worker_concurrency)
        for i in range(args.workers)
    ]


def scenario(bench: Bench, args: argparse.Namespace, out: dict[str, Any]) -> None:
    """Fills `out` step by step, so a failure part-way still leaves every figure so far."""
    sim: SimulatorProcess = bench.simulator(capacity=args.tasks)
    system = bench.system(
        sim.url,
        V1_MAX_CONCURRENCY=str(args.tasks),
        QUEUE_LIMIT="1000000",
        TENANT_MAX_QUEUED="1000000",
        TENANT_RATE_PER_SECOND="0",
        WORKER_CONCURRENCY=str(args.worker_concurrency),
    )
    gateway = system.start_gateway()
    system.start_maintenance()
    t_start = time.time()
    workers = start_workers(system, args)
    out["workers_started_s"] = round(time.time() - t_start, 1)
    valkey_pid = bench.valkey_pid()
    assert valkey_pid is not None and sim.pid is not None
    # A gevent worker is one process: no scan of /proc for its children every second.
    watches = {f"worker{i}": ProcWatch(w.pid, tree=False) for i, w in enumerate(workers)}
    watches.update(
        gateway=ProcWatch(gateway.pid),
        valkey=ProcWatch(valkey_pid, tree=False),
        v1sim=ProcWatch(sim.pid),
    )
    tag = new_tag("inflight10k")
    body = {"message": f"run [sim:delay={args.delay:g}] [sim:tag={tag}]", "estimated_seconds": 30}
    with Sampler(watches, interval=1.0) as sampler:
        out["sampler"] = sampler
        out["rss_idle_mib"] = {n: mib(w.rss()) for n, w in watches.items()}
        t0 = time.time()
        sent = asyncio.run(burst(system.url, body, args.tasks, args.submitters))
        out["submit_burst_s"] = round(time.time() - t0, 2)
        ids = sent.pop("ids")
        out["accepted"] = len(ids)
        out["burst"] = sent
        log(NAME, f"{len(ids)} of {args.tasks} accepted in {out['submit_burst_s']}s {sent}")
        wait_loaded(sim, args, t0)
        out["probes_started_after_s"] = round(time.time() - t0, 1)
        out["active_before_probes"] = sim.stats()["active"]
        p0 = time.time()
        out["probes"] = probes_apart(system.url, args.probes, args.probe_rate)
        out["probe_window"] = (p0, time.time())
        out["active_after_probes"] = sim.stats()["active"]
        out["valkey_clients_loaded"] = valkey_clients(system.redis_url)
        log(NAME, f"probes {out['probes']['latency_ms']}; V1 active {out['active_after_probes']}")
        ok, states = wait_all_terminal(system.redis_url, ids, args.delay + args.timeout, 2.0)
        out["all_terminal"] = ok
        counts: dict[str, int] = {}
        for state in states.values():
            counts[state or "missing"] = counts.get(state or "missing", 0) + 1
        out["states"] = counts
        finished = [
            float(v) for v in live_states(system.redis_url, ids, "finished_at").values() if v
        ]
        out["wall_s"] = round(max(finished) - t0, 2) if finished else None
        out["sim_stats"] = sim.stats()
        records = sim.requests(tag)
        out["v1_calls"] = len(records)
        out["extra_calls"] = extra_calls(system.redis_url, ids, records)


def extra_calls(redis_url: str, ids: list[str], records: list[dict[str, Any]]) -> dict[str, Any]:
    """Where V1 calls beyond one per task came from: how the calls ended (HTTP status,
    client gone), tasks run more than once and why (their `retrying` events' error types),
    and V1 sessions that had two calls running at the same moment (a duplicate run; only
    where tasks carry a session)."""
    ended = Counter(
        "disconnected" if r.get("disconnected") else str(r.get("status")) for r in records
    )
    by_session: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        if record.get("session"):  # a task without a session_id: V1 sees no session
            by_session.setdefault(str(record["session"]), []).append(record)
    attempts = live_states(redis_url, ids, "attempts")
    rerun = [task_id for task_id, n in attempts.items() if int(n or 0) > 1]
    client = redis.Redis.from_url(redis_url, socket_timeout=60)
    reasons: Counter[str] = Counter()
    try:
        for task_id in rerun:
            for _, fields in client.xrange(keys.events_key(task_id)):
                event = json.loads(fields[b"e"])
                if event.get("type") == "retrying":
                    error = event["data"].get("error") or {}
                    reasons[str(error.get("type"))] += 1
    finally:
        client.close()
    return {
        "call_endings": dict(ended),
        "tasks_attempts": dict(Counter(int(n or 0) for n in attempts.values())),
        "retry_reasons": dict(reasons),
        "sessions_with_more_than_one_call": sum(1 for c in by_session.values() if len(c) > 1),
        "overlapping_call_pairs": sum(overlaps(c) for c in by_session.values()),
    }


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, f"bench.{NAME}", {k: v for k, v in vars(args).items()})
    out: dict[str, Any] = {}
    with Bench(NAME) as bench:
        bench.valkey()
        try:
            scenario(bench, args, out)
        except Exception as exc:  # report what was measured, and why the rest is missing
            out["error"] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
        except SystemExit as exc:  # SIGTERM (run_all's timeout): still write what we have
            out["error"] = f"stopped by a signal (exit {exc.code})"
    sampler: Sampler | None = out.pop("sampler", None)
    if sampler is not None:
        out["rss_peak_mib"] = {n: mib(sampler.peak_rss(n)) for n in sampler.series}
        if "probe_window" in out:
            # Who had the CPU while the probes ran (where their latency can come from).
            start, end = out.pop("probe_window")
            out["cpu_pct_during_probes"] = {
                n: sampler.cpu_pct_between(n, start, end) for n in sampler.series
            }
    report.details = out
    log(NAME, str(out))
    add_figures(report, args, out)
    return report


def add_figures(report: Report, args: argparse.Namespace, out: dict[str, Any]) -> None:
    missed: list[str] = []
    succeeded = out.get("states", {}).get("succeeded", 0)
    if succeeded < args.tasks:
        missed.append("all succeed")
    report.add(
        "tasks succeeded (target: all)",
        succeeded,
        f"of {args.tasks}",
        note=f"states {out.get('states')}; accepted {out.get('accepted')}",
    )
    stats = out.get("sim_stats", {})
    report.add(
        "simulator peak concurrent V1 runs",
        stats.get("peak_active"),
        "runs",
        note=f"capacity {args.tasks}, V1_MAX_CONCURRENCY {args.tasks}, calls {out.get('v1_calls')}",
    )
    extra = out.get("extra_calls", {})
    report.add(
        "V1 calls beyond one per task",
        out["v1_calls"] - args.tasks if "v1_calls" in out else None,
        "calls",
        note=f"call endings {extra.get('call_endings')}; task attempts "
        f"{extra.get('tasks_attempts')}; retry reasons {extra.get('retry_reasons')}; "
        f"overlapping calls of one session {extra.get('overlapping_call_pairs')}",
    )
    peaks = out.get("rss_peak_mib", {})
    workers = {n: v for n, v in peaks.items() if n.startswith("worker")}
    worst = max(workers.values(), default=None)
    if worst is None or worst >= RSS_TARGET_MB:
        missed.append(f"worker RSS < {RSS_TARGET_MB:.0f} MB")
    report.add(
        f"worker RSS peak, largest process (target < {RSS_TARGET_MB:.0f} MB)",
        worst,
        "MiB",
        note=", ".join(f"{n} {v}" for n, v in workers.items()),
    )
    report.add("worker RSS peak, sum of processes", round(sum(workers.values()), 1), "MiB")
    report.add(
        "worker processes / greenlets it took",
        args.workers,
        "processes",
        note=f"-c {args.worker_concurrency} greenlets each = "
        f"{args.workers * args.worker_concurrency} greenlets",
    )
    probe = out.get("probes", {})
    lat = probe.get("latency_ms", {})
    if lat.get("p99") is None or lat["p99"] >= PROBE_P99_TARGET_MS or probe.get("errors"):
        missed.append(f"probe p99 < {PROBE_P99_TARGET_MS:.0f} ms")
    loaded = (
        f"V1 runs active {out.get('active_before_probes')} before, "
        f"{out.get('active_after_probes')} after; probes from "
        f"{out.get('probes_started_after_s')} s after the first submit"
    )
    report.add(f"probe submit p50 while loaded ({args.probe_rate:g}/s)", lat.get("p50"), "ms")
    report.add(
        f"probe submit p99 while loaded (target < {PROBE_P99_TARGET_MS:.0f} ms)",
        lat.get("p99"),
        "ms",
        note=f"{loaded}; errors {probe.get('errors')}",
    )
    cpu = out.get("cpu_pct_during_probes", {})
    if cpu:
        worker_cpu = [v for n, v in cpu.items() if n.startswith("worker") and v is not None]
        others = ", ".join(f"{n} {v}" for n, v in cpu.items() if not n.startswith("worker"))
        report.add(
            "CPU while the probes ran, worker processes together",
            round(sum(worker_cpu), 1),
            "% of a core",
            note=f"{others} (% of one core; 2 cores)",
        )
    burst = out.get("burst", {})
    report.add(
        "submit burst, all tasks",
        out.get("submit_burst_s"),
        "s",
        note=f"{args.submitters} submitters; p99 {burst.get('latency_ms', {}).get('p99')} ms; "
        f"refusals/errors {burst.get('errors')}",
    )
    report.add(
        "wall time first submit -> last finished",
        out.get("wall_s"),
        "s",
        note=f"each V1 call {args.delay:g} s",
    )
    report.add("gateway RSS peak", peaks.get("gateway"), "MiB")
    report.add(
        "Valkey RSS peak",
        peaks.get("valkey"),
        "MiB",
        note=f"connected clients while loaded: {out.get('valkey_clients_loaded')}",
    )
    report.add(
        "targets met",
        3 - len(missed),
        "of 3",
        note=("missed: " + "; ".join(missed)) if missed else "all targets met",
    )
    if "error" in out:
        report.note(f"run stopped early: {out['error']}")
    report.note(
        f"{args.workers} gevent workers -Q short -c {args.worker_concurrency}, maintenance, one "
        f"gateway; simulator capacity {args.tasks}; LEASE_SECONDS=15; started in "
        f"{out.get('workers_started_s')} s; probes go to the unserved long queue, sent from "
        "a process of their own (not the one sampling /proc)"
    )


def main(argv: list[str] | None = None) -> int:
    return script_main(run, parse_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
