"""Issue 13: what other tasks' events cost a gateway, with 0 and with 1000 followers.

Two gateway processes on one fresh Valkey, no Celery worker. Gateway A takes an open-loop
submit load (each accepted submit emits exactly one event, `queued`); gateway B, the one
measured, takes no request for those tasks. B's CPU is read over each phase and the same
length of idleness is subtracted (its timers, health checks):

1. no client on B;
2. --followers WebSocket clients on B, each following one task of its own that was
   created beforehand and stays queued (so it emits nothing during the phase).

Figures: B's CPU per 1000 events of tasks it has no follower for, in each phase, and B's
CPU per second while idle. Before issue 13 every gateway received (and, once it had any
follower, parsed) every event; now it subscribes to its followed tasks' channels only.

    .venv/bin/python -m bench.event_bridge [--quick] [--followers 1000] [--rate 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench import loadgen
from bench.api import AUTH, api_client
from bench.measure import ProcWatch
from bench.processes import Bench, raise_nofile, stop_system
from bench.report import Report, log, script_main
from testbed.system import System

NAME = "event_bridge"
BODY = {"message": "event bridge bench", "estimated_seconds": 5}
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


async def idle_cpu(watch: ProcWatch, seconds: float) -> float:
    cpu0 = watch.cpu()
    await asyncio.sleep(seconds)
    return watch.cpu() - cpu0


async def event_phase(
    url: str, watch: ProcWatch, args: argparse.Namespace, idle_per_s: float
) -> dict[str, Any]:
    """Submit load on A (`url`) while B (`watch`) is measured."""
    host, port = url.removeprefix("http://").split(":")
    pool = loadgen.Pool(host, int(port))
    request = loadgen.build_request(host, int(port), "/v1/tasks", BODY, AUTH)
    try:
        cpu0, start = watch.cpu(), time.monotonic()
        phase = await loadgen.open_loop(pool, request, args.rate, args.seconds, 10.0)
        cpu = watch.cpu() - cpu0 - idle_per_s * (time.monotonic() - start)
    finally:
        pool.close()
    return {
        "events": phase.ok,
        "errors": dict(phase.errors),
        "cpu_s_over_idle": round(cpu, 4),
        "cpu_ms_per_1000_events": round(1e6 * cpu / phase.ok, 2) if phase.ok else None,
    }


async def follow(url: str, task_id: str) -> ClientConnection:
    ws = await connect(url, additional_headers=AUTH, open_timeout=60, ping_interval=None)
    await ws.send(json.dumps({"type": "subscribe", "task_id": task_id}))
    while json.loads(await ws.recv()).get("type") != "subscribed":
        pass
    return ws


async def scenario(a: System, b: System, args: argparse.Namespace) -> dict[str, Any]:
    watch = ProcWatch(b.gateway.pid if b.gateway else 0)
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
    idle = await idle_cpu(watch, args.seconds)
    out["idle_cpu_ms_per_s"] = round(1000 * idle / args.seconds, 3)
    out["no_followers"] = await event_phase(a.url, watch, args, idle / args.seconds)
    log(NAME, f"0 followers: {out['no_followers']}")
    ws_url = b.url.replace("http://", "ws://") + "/v1/ws"
    sockets: list[ClientConnection] = []
    gate = asyncio.Semaphore(50)

    async def one(task_id: str) -> None:
        async with gate:
            sockets.append(await follow(ws_url, task_id))

    await asyncio.gather(*(one(t) for t in ids))
    try:
        await asyncio.sleep(1.0)  # the catch-ups done
        idle = await idle_cpu(watch, args.seconds)
        out["idle_with_followers_cpu_ms_per_s"] = round(1000 * idle / args.seconds, 3)
        out["followers"] = await event_phase(a.url, watch, args, idle / args.seconds)
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
        try:
            b.start_gateway(ready_path="/healthz")
            results = asyncio.run(scenario(a, b, args))
        finally:
            stop_system(b)
    report.details = results
    none, many = results["no_followers"], results["followers"]
    report.add("gateway B CPU per 1000 unfollowed events, 0 followers",
               none["cpu_ms_per_1000_events"], "ms", note=f"{none['events']} events")  # fmt: skip
    report.add(f"gateway B CPU per 1000 unfollowed events, {args.followers} followers",
               many["cpu_ms_per_1000_events"], "ms", note=f"{many['events']} events")  # fmt: skip
    with_followers = results["idle_with_followers_cpu_ms_per_s"]
    report.add("gateway B idle CPU, 0 / with followers", results["idle_cpu_ms_per_s"], "ms/s",
               note=f"with followers {with_followers} ms/s")  # fmt: skip
    report.note("events come from submits to gateway A (one `queued` event each); B's idle "
                "CPU over the same time is subtracted")  # fmt: skip
    return report


def main(argv: list[str] | None = None) -> int:
    return script_main(run, parse_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
