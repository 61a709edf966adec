"""Issue 13: the whole system on one box, measured from outside, against the bare endpoint.

Ours: a full system on this machine (fresh Valkey, V1 simulator, gateway, maintenance and
--workers gevent workers on all queues, `-c` --concurrency) with the workers processing
every task submitted (`[sim:chunks=1]`: an instant V1 answer, so the workers' CPU per task
is what competes with the gateway). Baseline (same run, same Valkey, its own DB): the bare
endpoint `bench/baseline_app.py` (pydantic body, one LPUSH; nothing consumes it).

Phases, each started from an idle system (every process under 15 % of a core): open loop at
each --rates (default 100 and 300 submits/s) for --seconds, then a closed loop of
--closed-concurrency clients for --closed-seconds. Figures: submit p50/p99 and the answered
rate (202s per second) at each rate, closed-loop submits/s, and for ours the V1 calls
finished per second during each phase and each process's CPU share (gateway, workers,
Valkey, simulator). No quota or queue limit refuses (raised), so every 202 is a real task.

    .venv/bin/python -m bench.whole_system [--quick] [--rates 100,300] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from bench import loadgen
from bench.api import AUTH
from bench.measure import ProcWatch
from bench.processes import Bench, child_env
from bench.report import Report, log, script_main
from v1sim.process import SimulatorProcess

NAME = "whole_system"
BODY = {"message": "whole system [sim:chunks=1]", "estimated_seconds": 5}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.whole_system", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter phases")
    parser.add_argument("--rates", default="100,300", help="offered submits/s, open loop")
    parser.add_argument("--seconds", type=float, default=None, help="s per rate (10; quick 4)")
    parser.add_argument("--closed-concurrency", type=int, default=32)
    parser.add_argument("--closed-seconds", type=float, default=None, help="(10; quick 4)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (all queues)")
    parser.add_argument("--concurrency", type=int, default=50, help="-c of each worker")
    parser.add_argument("--timeout", type=float, default=10.0, help="per-request timeout (s)")
    parser.add_argument("--settle-max", type=float, default=120.0, help="s to wait for idle")
    args = parser.parse_args(argv)
    args.rate_list = [float(r) for r in args.rates.split(",") if r.strip()]
    if args.seconds is None:
        args.seconds = 4.0 if args.quick else 10.0
    if args.closed_seconds is None:
        args.closed_seconds = 4.0 if args.quick else 10.0
    return args


def start_baseline(bench: Bench) -> tuple[str, int]:
    from deploy.embedded_valkey import free_port

    port = free_port()
    redis_url = bench.redis_url(bench.new_db())
    proc = bench.process(
        "baseline-app",
        [sys.executable, "-m", "bench.baseline_app", "--port", str(port), "--redis-url", redis_url],
        child_env(),
    )
    url = f"http://127.0.0.1:{port}"
    proc.wait_for_http(f"{url}/readyz", 30)
    return url, proc.pid


async def settle(watches: dict[str, ProcWatch], max_wait: float, limit: float = 0.15) -> float:
    """Wait until every process uses under `limit` of a core over 0.5 s (the workers have
    worked off the last phase's tasks); returns the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < max_wait:
        before = {n: w.cpu() for n, w in watches.items()}
        await asyncio.sleep(0.5)
        if all((w.cpu() - before[n]) / 0.5 < limit for n, w in watches.items()):
            break
    return round(time.monotonic() - start, 1)


class Phase:
    """CPU of every watched process and V1 calls finished, from start to `end()`."""

    def __init__(self, watches: dict[str, ProcWatch], sim: SimulatorProcess | None) -> None:
        self.watches, self.sim = watches, sim
        self.t0 = time.monotonic()
        self.cpu0 = {n: w.cpu() for n, w in watches.items()}
        self.done0 = self._done()

    def _done(self) -> int:
        if self.sim is None:
            return 0
        stats = self.sim.stats()
        return int(stats["total"]) - int(stats["active"])

    def end(self) -> dict[str, Any]:
        wall = time.monotonic() - self.t0
        return {
            "cpu_pct": {
                n: round(100 * (w.cpu() - self.cpu0[n]) / wall, 1) for n, w in self.watches.items()
            },
            "v1_finished_per_s": round((self._done() - self.done0) / wall, 1) if self.sim else None,
        }


async def measure(
    args: argparse.Namespace,
    targets: dict[str, tuple[str, dict[str, ProcWatch]]],
    sim: SimulatorProcess,
) -> dict[str, Any]:
    """targets: name -> (base url, its processes: the first is the HTTP server)."""
    out: dict[str, Any] = {name: {"open": [], "closed": None} for name in targets}
    everything = {f"{t}:{n}": w for t, (_, ws) in targets.items() for n, w in ws.items()}
    pools: dict[str, loadgen.Pool] = {}
    requests: dict[str, bytes] = {}
    for name, (url, _) in targets.items():
        host, port = url.removeprefix("http://").split(":")
        pools[name] = loadgen.Pool(host, int(port), limit=512)
        requests[name] = loadgen.build_request(host, int(port), "/v1/tasks", BODY, AUTH)
    try:
        for name in targets:  # warm-up: connections, imports, the workers' first tasks
            warm = await loadgen.open_loop(pools[name], requests[name], 50, 1.0, args.timeout)
            if warm.ok == 0:
                raise RuntimeError(f"{name}: warm-up failed: {dict(warm.errors)}")
        for rate in args.rate_list:
            for name, (_, watches) in targets.items():
                waited = await settle(everything, args.settle_max)
                phase = Phase(watches, sim if name == "ours" else None)
                result = await loadgen.open_loop(
                    pools[name], requests[name], rate, args.seconds, args.timeout
                )
                summary = {**result.summary(), **phase.end(), "settled_before_s": waited}
                out[name]["open"].append(summary)
                lat = summary["latency_ms"]
                log(
                    NAME,
                    f"{name:8s} {rate:5.0f}/s offered: answered {summary['achieved_rate']}/s "
                    f"({result.ok}/{result.sent}) p50 {lat['p50']} ms p99 {lat['p99']} ms "
                    f"errors {dict(result.errors)} cpu% {summary['cpu_pct']} "
                    f"V1 done/s {summary['v1_finished_per_s']}",
                )
        for name, (_, watches) in targets.items():
            waited = await settle(everything, args.settle_max)
            phase = Phase(watches, sim if name == "ours" else None)
            result = await loadgen.closed_loop(
                pools[name], requests[name], args.closed_concurrency, args.closed_seconds
            )
            summary = {**result.summary(), **phase.end(), "settled_before_s": waited}
            out[name]["closed"] = summary
            log(
                NAME,
                f"{name:8s} closed loop x{args.closed_concurrency}: {summary['achieved_rate']}/s "
                f"p99 {summary['latency_ms']['p99']} ms cpu% {summary['cpu_pct']} "
                f"V1 done/s {summary['v1_finished_per_s']}",
            )
    finally:
        for pool in pools.values():
            pool.close()
    return out


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, f"bench.{NAME}", {k: v for k, v in vars(args).items()})
    with Bench(NAME) as bench:
        bench.valkey()
        sim = bench.simulator(capacity=args.workers * args.concurrency + 50)
        system = bench.system(
            sim.url,
            QUEUE_LIMIT="1000000",
            TENANT_MAX_QUEUED="1000000",
            TENANT_RATE_PER_SECOND="0",
            V1_MAX_CONCURRENCY=str(args.workers * args.concurrency),
            WORKER_CONCURRENCY=str(args.concurrency),
        )
        system.start_gateway()
        maintenance = system.start_maintenance()
        workers = [
            system.start_worker(name=f"all{i}", concurrency=args.concurrency)
            for i in range(args.workers)
        ]
        base_url, base_pid = start_baseline(bench)
        assert system.gateway is not None and sim.pid is not None
        valkey_pid = bench.valkey_pid()
        assert valkey_pid is not None
        shared = {"valkey": ProcWatch(valkey_pid, tree=False), "v1sim": ProcWatch(sim.pid)}
        ours = {"gateway": ProcWatch(system.gateway.pid)}
        ours.update({f"worker{i}": ProcWatch(w.pid) for i, w in enumerate(workers)})
        ours["maintenance"] = ProcWatch(maintenance.pid)
        targets = {
            "ours": (system.url, {**ours, **shared}),
            "baseline": (base_url, {"baseline": ProcWatch(base_pid), **shared}),
        }
        log(NAME, f"gateway {system.url} + {args.workers} workers; bare endpoint {base_url}")
        try:
            import uvloop

            results = uvloop.run(measure(args, targets, sim))
        except ImportError:
            results = asyncio.run(measure(args, targets, sim))
    report.details = results
    add_figures(report, args, results)
    return report


def add_figures(report: Report, args: argparse.Namespace, results: dict[str, Any]) -> None:
    ours, base = results["ours"], results["baseline"]
    for o, b in zip(ours["open"], base["open"], strict=True):
        rate = f"{o['offered_rate']:.0f}/s"
        errors = ""
        if o["errors"] or b["errors"]:
            errors = f"errors ours={o['errors']} base={b['errors']}; "
        cpu = ", ".join(f"{n} {v}" for n, v in o["cpu_pct"].items())
        for stat in ("p50", "p99"):
            report.add(
                f"submit {stat} @ {rate}, workers processing",
                o["latency_ms"][stat],
                "ms",
                baseline=b["latency_ms"][stat],
                note=errors if stat == "p99" else "",
            )
        report.add(
            f"submits answered per second @ {rate}",
            o["achieved_rate"],
            "1/s",
            baseline=b["achieved_rate"],
            note=f"{errors}ours: V1 calls finished {o['v1_finished_per_s']}/s; CPU % {cpu}",
        )
    oc, bc = ours["closed"], base["closed"]
    report.add(
        "closed-loop submits/s, workers processing",
        oc["achieved_rate"],
        "1/s",
        baseline=bc["achieved_rate"],
        note=f"{args.closed_concurrency} clients, p99 ours {oc['latency_ms']['p99']} ms / "
        f"base {bc['latency_ms']['p99']} ms; ours: V1 calls finished {oc['v1_finished_per_s']}/s",
    )
    report.add("gateway CPU % of a core, closed loop", oc["cpu_pct"]["gateway"], "%")
    workers_cpu = sum(v for n, v in oc["cpu_pct"].items() if n.startswith("worker"))
    report.add("workers CPU % (sum), closed loop", round(workers_cpu, 1), "%")
    report.note(
        f"ours: gateway + maintenance + {args.workers} gevent workers -c {args.concurrency} on "
        "priority,short,long + V1 simulator, all on this box, tasks [sim:chunks=1] processed "
        "as they come; baseline: bench/baseline_app.py (one LPUSH, nothing consumes); load: "
        "bench/loadgen.py in this process; each phase starts from an idle system; "
        "ratio = ours / baseline."
    )


def main(argv: list[str] | None = None) -> int:
    return script_main(run, parse_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
