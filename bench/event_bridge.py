"""Issue 13: what other tasks' events cost a gateway, with 0 and with 1000 followers.

Two gateway processes on one fresh Valkey, no Celery worker. Gateway A takes an open-loop
submit load (each accepted submit emits exactly one event, `queued`); gateway B, the one
measured, takes no request for those tasks. B's CPU is read over each phase and its CPU
while idle over the same time is subtracted (its timers, health checks):

1. no client on B;
2. --followers WebSocket clients on B, each following one task of its own that was
   created beforehand and stays queued (so it emits nothing during the phase).

Figures: B's CPU per 1000 events of tasks it has no follower for, in each phase, and B's
CPU per second while idle. Before issue 13 every gateway received (and, once it had any
follower, parsed) every event; now it subscribes to its followed tasks' channels only.
Baseline, same run and same events: a process that receives and parses every event
(`bench/all_events_subscriber.py`, what each gateway did before), measured the same way.
Idleness is read before and after each phase (--seconds each; their mean is subtracted);
the gap between the two, over the phase's length, plus two clock ticks (CPU times are read
in ticks, 10 ms here), per 1000 events, is a figure's noise.

    .venv/bin/python -m bench.event_bridge [--quick] [--followers 1000] [--rate 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench import loadgen
from bench.api import AUTH, api_client
from bench.measure import ProcWatch
from bench.processes import Bench, raise_nofile, stop_system
from bench.report import Report, log, script_main
from testbed import ManagedProcess
from testbed.system import System

NAME = "event_bridge"
BODY = {"message": "event bridge bench", "estimated_seconds": 5}
# CPU times come in clock ticks: each of a figure's two readings is off by up to one.
TICK = 1 / os.sysconf("SC_CLK_TCK")
LIMITS = {"QUEUE_LIMIT": "1000000", "TENANT_MAX_QUEUED": "1000000", "TENANT_RATE_PER_SECOND": "0"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m bench.{NAME}", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 followers, shorter phases")
    parser.add_argument("--followers", type=int, default=None, help="default 1000 (quick 200)")
    parser.add_argument("--rate", type=float, default=300.0, help="submits (events) per second")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per phase")
    args = parser.parse_args(argv)
    if args.followers is None:
        args.followers = 200 if args.quick else 1000
    if args.seconds is None:
        # 20 s: each window then holds one round of uvicorn's WebSocket pings (every 20 s
        # per connection), so subtracting the idle window cancels them.
        args.seconds = 5.0 if args.quick else 20.0
    return args


async def idle_rates(watches: list[ProcWatch], seconds: float) -> list[float]:
    """Each process's CPU seconds per second over `seconds` of nothing happening."""
    cpu0 = [w.cpu() for w in watches]
    await asyncio.sleep(seconds)
    return [(w.cpu() - c) / seconds for w, c in zip(watches, cpu0, strict=True)]


def per_1000_events(cpu_s: float, events: int) -> float | None:
    return round(1e6 * cpu_s / events, 2) if events else None


async def event_phase(
    url: str, watches: list[ProcWatch], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Submit load on A (`url`) while B and the baseline subscriber (`watches`) are read,
    between an idle window before and one after: for each process, its CPU over its idle
    rate (their mean) per 1000 events, and that figure's noise (the two idle rates' gap
    over the phase, plus two clock ticks)."""
    before = await idle_rates(watches, args.seconds)
    host, port = url.removeprefix("http://").split(":")
    pool = loadgen.Pool(host, int(port))
    request = loadgen.build_request(host, int(port), "/v1/tasks", BODY, AUTH)
    try:
        cpu0, start = [w.cpu() for w in watches], time.monotonic()
        phase = await loadgen.open_loop(pool, request, args.rate, args.seconds, 10.0)
        elapsed = time.monotonic() - start
        used = [w.cpu() - c for w, c in zip(watches, cpu0, strict=True)]
    finally:
        pool.close()
    after = await idle_rates(watches, args.seconds)
    out = []
    for cpu, idle0, idle1 in zip(used, before, after, strict=True):
        over = cpu - (idle0 + idle1) / 2 * elapsed
        noise = abs(idle0 - idle1) * elapsed + 2 * TICK
        out.append({
            "events": phase.ok,
            "errors": dict(phase.errors),
            "cpu_s": round(cpu, 4),
            "idle_cpu_ms_per_s": [round(1000 * idle0, 3), round(1000 * idle1, 3)],
            "cpu_s_over_idle": round(over, 4),
            "cpu_ms_per_1000_events": per_1000_events(over, phase.ok),
            "noise_ms_per_1000_events": per_1000_events(noise, phase.ok),
        })  # fmt: skip
    return out


async def follow(url: str, task_id: str) -> ClientConnection:
    ws = await connect(url, additional_headers=AUTH, open_timeout=60, ping_interval=None)
    await ws.send(json.dumps({"type": "subscribe", "task_id": task_id}))
    while json.loads(await ws.recv()).get("type") != "subscribed":
        pass
    return ws


async def scenario(
    a: System, b: System, subscriber: ManagedProcess, args: argparse.Namespace
) -> dict[str, Any]:
    watches = [ProcWatch(b.gateway.pid if b.gateway else 0), ProcWatch(subscriber.pid)]
    async with api_client(a.url, connections=20) as api:  # followed: queued, silent
        ids = [
            str((await api.post("/v1/tasks", json=BODY)).json()["task_id"])
            for _ in range(args.followers)
        ]
    warm_host, warm_port = a.url.removeprefix("http://").split(":")
    warm_pool = loadgen.Pool(warm_host, int(warm_port))
    await loadgen.open_loop(
        warm_pool,
        loadgen.build_request(warm_host, int(warm_port), "/v1/tasks", BODY, AUTH),
        100,
        1.5,
        10.0,
    )
    warm_pool.close()
    out: dict[str, Any] = {}
    out["no_followers"], out["baseline"] = await event_phase(a.url, watches, args)
    log(NAME, f"0 followers: {out['no_followers']}; all-events subscriber: {out['baseline']}")
    ws_url = b.url.replace("http://", "ws://") + "/v1/ws"
    sockets: list[ClientConnection] = []
    gate = asyncio.Semaphore(50)

    async def one(task_id: str) -> None:
        async with gate:
            sockets.append(await follow(ws_url, task_id))

    await asyncio.gather(*(one(t) for t in ids))
    try:
        await asyncio.sleep(1.0)  # the catch-ups done
        out["followers"], out["baseline_2"] = await event_phase(a.url, watches, args)
        log(NAME, f"{len(sockets)} followers: {out['followers']}")
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return out


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, f"bench.{NAME}", dict(vars(args)))
    raise_nofile()
    with Bench(NAME) as bench:
        bench.valkey()
        a = bench.system("http://127.0.0.1:9", **LIMITS)
        a.start_gateway(ready_path="/healthz")  # no V1 here: /readyz would not pass
        b = System(a.redis_base, a.db, a.v1_url, a.workdir, overrides=dict(a.overrides))
        subscriber = bench.process(
            "all-events-subscriber",
            [sys.executable, "-m", "bench.all_events_subscriber", a.redis_url],
            ready_log="subscribed",
        )
        try:
            b.start_gateway(ready_path="/healthz")
            results = asyncio.run(scenario(a, b, subscriber, args))
        finally:
            stop_system(b)
    report.details = results
    none, many, base = results["no_followers"], results["followers"], results["baseline"]
    for label, phase in (("0 followers", none), (f"{args.followers} followers", many)):
        report.add(f"gateway B CPU per 1000 unfollowed events, {label}",
                   phase["cpu_ms_per_1000_events"], "ms", baseline=base["cpu_ms_per_1000_events"],
                   note=f"{phase['events']} events; noise +-{phase['noise_ms_per_1000_events']} "
                   f"ms")  # fmt: skip
    idle, idle_followed = none["idle_cpu_ms_per_s"], many["idle_cpu_ms_per_s"]
    report.add("gateway B idle CPU, 0 followers (before / after its phase)", idle[0], "ms/s",
               note=f"after {idle[1]} ms/s; with {args.followers} followers "
               f"{idle_followed[0]} / {idle_followed[1]} ms/s")  # fmt: skip
    report.note("events come from submits to gateway A (one `queued` event each); each "
                "process's idle CPU over the same time is subtracted; baseline: one process "
                "receiving and parsing every event (bench/all_events_subscriber.py: what each "
                "gateway did before issue 13), same events; noise: the gap between the idle "
                "rates before and after, over the phase, plus two CPU clock ticks")  # fmt: skip
    return report


def main(argv: list[str] | None = None) -> int:
    return script_main(run, parse_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
