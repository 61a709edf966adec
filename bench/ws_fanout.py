"""Issue 3: WebSocket fan-out of one gateway process to many clients.

N clients (default 1000) connect to `/v1/ws` of ONE gateway process, then each subscribes
to a streaming task (`[sim:chunks=100] [sim:chunk_delay=0.05]`). By default every client
has its own task; `--clients-per-task K` lets K clients share a task (fewer V1 streams for
the worker and simulator, same number of sockets and messages for the gateway). Tasks wait
`--start-delay` s in V1 before streaming so every client is subscribed first.

Figures: events delivered per second (all clients, first event -> last terminal event),
latency = client receive time - event `ts` (unix time the worker wrote it, Redis TIME)
p50/p99 over every event written after the client sent its subscribe (earlier ones, e.g.
`queued`, come from the log replay and are only counted), gateway RSS
before clients / with clients connected / peak / after they left (sampled from /proc),
clients that saw their terminal event, and seq gaps / duplicates per (client, task) (must
be 0). Load: all clients in this process (asyncio + websockets), on the same 2 cores.

    .venv/bin/python -m bench.ws_fanout [--quick] [--clients 1000] [--clients-per-task 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import time
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.asyncio.client import connect

from bench.api import AUTH, TERMINAL, api_client, submit_one
from bench.measure import ProcWatch, Sampler, describe, mib
from bench.processes import Bench, raise_nofile, stop_system
from bench.report import Report, log, script_main

NAME = "ws_fanout"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ws_fanout", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200 clients")
    parser.add_argument("--clients", type=int, default=None, help="default 1000 (quick 200)")
    parser.add_argument(
        "--clients-per-task",
        default="1,10",
        help="comma list: one phase (fresh gateway) per value; 1 = a task per client",
    )
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--chunk-delay", type=float, default=0.05)
    parser.add_argument("--start-delay", type=float, default=None, help="V1 delay before chunks")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--compression",
        choices=("deflate", "none"),
        default="deflate",
        help="permessage-deflate offered by the clients (browsers do)",
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="s to wait for terminals")
    args = parser.parse_args(argv)
    if args.clients is None:
        args.clients = 200 if args.quick else 1000
    args.per_task_list = [int(k) for k in str(args.clients_per_task).split(",") if k.strip()]
    return args


@dataclass
class ClientState:
    index: int
    events: int = 0
    latencies: list[float] = field(default_factory=list)
    by_type: dict[str, list[float]] = field(default_factory=dict)
    replayed: int = 0  # events written before this client subscribed (sent from the log)
    last_seq: dict[str, int] = field(default_factory=dict)
    gaps: int = 0
    duplicates: int = 0
    terminal: bool = False
    first: float = 0.0
    last: float = 0.0
    error: str | None = None


async def client(
    url: str,
    state: ClientState,
    task: asyncio.Future[str],
    connected: asyncio.Semaphore,
    ready: list[int],
    compression: str | None,
    bins: dict[int, int],
) -> None:
    try:
        async with connected:
            ws = await connect(
                url,
                additional_headers=AUTH,
                open_timeout=60,
                ping_interval=None,
                max_size=None,
                compression=compression,
            )
        ready.append(state.index)
        async with ws:
            task_id = await task
            subscribed_at = time.time()
            await ws.send(json.dumps({"type": "subscribe", "task_id": task_id}))
            async for raw in ws:
                now = time.time()
                message = json.loads(raw)
                seq = message.get("seq")
                if seq is None:
                    continue
                tid = message["task_id"]
                last = state.last_seq.get(tid, 0)
                if seq <= last:
                    state.duplicates += 1
                    continue
                if seq != last + 1:
                    state.gaps += seq - last - 1
                state.last_seq[tid] = seq
                state.events += 1
                second = int(now)
                bins[second] = bins.get(second, 0) + 1
                state.first = state.first or now
                state.last = now
                ts = float(message["ts"])
                if ts < subscribed_at:
                    state.replayed += 1
                else:
                    state.latencies.append(now - ts)
                    state.by_type.setdefault(message["type"], []).append(now - ts)
                if message["type"] in TERMINAL:
                    state.terminal = True
                    return
    except (OSError, websockets.WebSocketException, TimeoutError) as exc:
        state.error = f"{type(exc).__name__}: {exc}"[:200]


async def scenario(bench: Bench, args: argparse.Namespace, per_task: int) -> dict[str, Any]:
    tasks = -(-args.clients // per_task)
    start_delay = args.start_delay if args.start_delay is not None else max(3.0, tasks / 100.0)
    sim = bench.simulator(capacity=tasks + 50)
    system = bench.system(
        sim.url,
        V1_MAX_CONCURRENCY="2000",
        QUEUE_LIMIT="1000000",
        LEASE_SECONDS="15",
        WORKER_CONCURRENCY=str(tasks),
    )
    system.start_gateway()
    per_worker = -(-tasks // args.workers)
    for i in range(args.workers):
        system.start_worker("short", name=f"fan{i}", concurrency=max(per_worker, 10))
    assert system.gateway is not None
    gateway = ProcWatch(system.gateway.pid)
    worker_watches = {
        f"worker{i}": ProcWatch(p.pid)
        for i, p in enumerate(x for x in system.processes if x.name.startswith("worker-"))
    }
    ws_url = system.url.replace("http://", "ws://") + "/v1/ws"
    loop = asyncio.get_running_loop()
    states = [ClientState(i) for i in range(args.clients)]
    futures: list[asyncio.Future[str]] = [loop.create_future() for _ in range(tasks)]
    bins: dict[int, int] = {}
    ready: list[int] = []
    handshakes = asyncio.Semaphore(50)
    compression = None if args.compression == "none" else "deflate"
    message = (
        f"fanout [sim:delay={start_delay:g}] [sim:chunks={args.chunks}] "
        f"[sim:chunk_delay={args.chunk_delay:g}]"
    )
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    watches = {"gateway": gateway, "load_client": ProcWatch(os.getpid(), tree=False)}
    with Sampler({**watches, **worker_watches}, interval=0.2) as sampler:
        await asyncio.sleep(0.5)
        rss_before = gateway.rss()
        t_connect = time.time()
        clients = [
            asyncio.create_task(
                client(
                    ws_url, s, futures[s.index // per_task], handshakes, ready, compression, bins
                )
            )
            for s in states
        ]
        while len(ready) + sum(1 for s in states if s.error) < args.clients:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        connect_s = time.time() - t_connect
        await asyncio.sleep(1.0)
        rss_connected = gateway.rss()
        log(
            NAME,
            f"{len(ready)} clients connected in {connect_s:.1f}s; "
            f"gateway RSS {mib(rss_connected)} MiB",
        )
        t_submit = time.time()
        async with api_client(system.url, connections=16) as http:
            gate = asyncio.Semaphore(16)

            async def submit(j: int) -> None:
                async with gate:
                    accepted = await submit_one(http, {"message": message, "estimated_seconds": 10})
                futures[j].set_result(accepted["task_id"])

            await asyncio.gather(*(submit(j) for j in range(tasks)))
        log(NAME, f"{tasks} tasks submitted in {time.time() - t_submit:.1f}s")
        stream_start = time.time()
        _, pending = await asyncio.wait(clients, timeout=args.timeout + start_delay)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        t_end = time.time()
        await asyncio.sleep(2.0)
        rss_after = gateway.rss()
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    stop_system(system)
    sim.stop()
    latencies = [v for s in states for v in s.latencies]
    events = sum(s.events for s in states)
    first = min((s.first for s in states if s.first), default=0.0)
    last = max((s.last for s in states if s.last), default=0.0)
    window = (first, last)
    gw_cpu = [p for p in sampler.series["gateway"] if window[0] <= p[0] <= window[1]]
    gw_cpu_pct = (
        100 * (gw_cpu[-1][2] - gw_cpu[0][2]) / (gw_cpu[-1][0] - gw_cpu[0][0])
        if len(gw_cpu) > 1
        else None
    )
    client_cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    errors = [s.error for s in states if s.error]
    return {
        "clients": args.clients,
        "tasks": tasks,
        "clients_per_task": per_task,
        "start_delay_s": start_delay,
        "connected": len(ready),
        "connect_s": round(connect_s, 2),
        "events_received": events,
        "delivery_window_s": round(last - first, 2) if events else None,
        "events_per_s": round(events / (last - first), 1) if events and last > first else None,
        "events_per_s_peak_1s": max(bins.values(), default=0),
        "latency_ms": describe(latencies),
        "latency_by_type_ms": {
            kind: describe([v for s in states for v in s.by_type.get(kind, [])])
            for kind in sorted({k for s in states for k in s.by_type})
        },
        "replayed_events": sum(s.replayed for s in states),
        "streaming_latency_ms": describe(
            [v for s in states for k, vs in s.by_type.items() if k != "started" for v in vs]
        ),
        "terminal_seen": sum(1 for s in states if s.terminal),
        "gaps": sum(s.gaps for s in states),
        "duplicates": sum(s.duplicates for s in states),
        "client_errors": len(errors),
        "client_error_examples": sorted(set(errors))[:5],
        "gateway_rss_mib": {
            "before_clients": mib(rss_before),
            "clients_connected": mib(rss_connected),
            "peak": mib(sampler.peak_rss("gateway")),
            "after_clients_left": mib(rss_after),
        },
        "gateway_cpu_pct_while_streaming": None if gw_cpu_pct is None else round(gw_cpu_pct, 1),
        "cpu_pct_busiest_1s": {n: sampler.peak_cpu_pct(n) for n in sampler.series},
        "workers_rss_peak_mib": {n: mib(sampler.peak_rss(n)) for n in worker_watches},
        "load_client_cpu_pct": round(100 * client_cpu / max(t_end - t_connect, 1e-9), 1),
        "stream_wall_s": round(t_end - stream_start, 2),
    }


def run(args: argparse.Namespace) -> Report:
    report = Report(NAME, f"bench.{NAME}", dict(vars(args)))
    raise_nofile()
    results = []
    with Bench(NAME) as bench:
        bench.valkey()
        for per_task in args.per_task_list:
            log(NAME, f"phase: {args.clients} clients, {per_task} client(s) per task")
            result = asyncio.run(scenario(bench, args, per_task))
            log(NAME, str(result))
            results.append(result)
    report.details = {"phases": results}
    for result in results:
        k = result["clients_per_task"]
        sfx = f" [{result['clients']} clients, {result['tasks']} tasks]"
        rss = result["gateway_rss_mib"]
        lat = result["latency_ms"]
        report.add(
            f"events delivered per second{sfx}",
            result["events_per_s"],
            "1/s",
            note=f"{result['events_received']} events in {result['delivery_window_s']}s; "
            f"gateway CPU {result['gateway_cpu_pct_while_streaming']}%",
        )
        busiest = result["cpu_pct_busiest_1s"]
        report.add(
            f"events per second, busiest 1 s{sfx}",
            result["events_per_s_peak_1s"],
            "1/s",
            note="busiest-second CPU % of one core: "
            + ", ".join(f"{n} {v}" for n, v in busiest.items()),
        )
        report.add(
            f"event latency p50 (receive - ts){sfx}",
            lat["p50"],
            "ms",
            note=f"n={lat['n']}; replayed (not timed) {result['replayed_events']}",
        )
        report.add(
            f"event latency p99 (receive - ts){sfx}", lat["p99"], "ms", note=f"max {lat['max']} ms"
        )
        slat = result["streaming_latency_ms"]
        report.add(
            f"event latency p50, progress+terminal only{sfx}",
            slat["p50"],
            "ms",
            note=f"n={slat['n']}",
        )
        report.add(
            f"event latency p99, progress+terminal only{sfx}",
            slat["p99"],
            "ms",
            note=f"'started' p99 {result['latency_by_type_ms'].get('started', {}).get('p99')}"
            " ms (subscribe racing the claim)",
        )
        report.add(
            f"clients that saw their terminal event{sfx}",
            result["terminal_seen"],
            f"of {args.clients}",
            note=f"connected {result['connected']}, errors {result['client_errors']}",
        )
        report.add(f"seq gaps{sfx}", result["gaps"], "", note="must be 0")
        report.add(f"duplicate events{sfx}", result["duplicates"], "", note="must be 0")
        report.add(f"gateway RSS before clients{sfx}", rss["before_clients"], "MiB")
        report.add(f"gateway RSS with clients connected{sfx}", rss["clients_connected"], "MiB")
        report.add(f"gateway RSS peak{sfx}", rss["peak"], "MiB")
        report.add(f"gateway RSS after clients left{sfx}", rss["after_clients_left"], "MiB")
        report.note(
            f"phase {k} client(s)/task: {result['tasks']} tasks [sim:delay="
            f"{result['start_delay_s']:g}] [sim:chunks={args.chunks}] "
            f"[sim:chunk_delay={args.chunk_delay:g}], stream wall {result['stream_wall_s']}s, "
            f"worker RSS peak {result['workers_rss_peak_mib']}, load client CPU "
            f"{result['load_client_cpu_pct']}% of one core"
        )
    report.note(
        f"one gateway process per phase; PROGRESS_INTERVAL default (0.1 s); compression "
        f"{args.compression}; {args.workers} gevent worker(s) -Q short -c tasks; all clients "
        "in this process (asyncio + websockets) on the same 2 cores"
    )
    return report


def main(argv: list[str] | None = None) -> int:
    return script_main(run, parse_args, argv)


if __name__ == "__main__":
    raise SystemExit(main())
