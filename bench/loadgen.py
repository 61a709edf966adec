"""A light open-loop / closed-loop HTTP/1.1 load generator on asyncio streams.

httpx costs about a millisecond of client CPU per request; on a 2-core machine that is
CPU taken from the server under test. This client sends one pre-built request over
keep-alive connections and reads status + Content-Length body, nothing more (tens of
microseconds per request), so the figures measure the server, not the client.

Open loop: request i is *scheduled* at t0 + i/rate whatever happened before, and its
latency is measured from that scheduled time (no coordinated omission: a slow server is
charged for the queue it causes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import resource
import socket
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]

# Connections an open-loop phase starts with: its rate times this, at least the minimum.
WARM_SECONDS, WARM_CONNECTIONS_MIN = 0.02, 8


class StaleConnection(ConnectionError):
    """The server had closed this keep-alive connection before our request (retry it)."""


def build_request(host: str, port: int, path: str, body: Any, headers: dict[str, str]) -> bytes:
    payload = json.dumps(body).encode()
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


class Pool:
    """Keep-alive connections to one server; at most `limit` open at once."""

    def __init__(self, host: str, port: int, limit: int = 512) -> None:
        self.host = host
        self.port = port
        self.limit = limit
        self.idle: list[Conn] = []
        self.count = 0
        self.peak = 0
        self.waiters: deque[asyncio.Future[Conn]] = deque()

    async def _open(self) -> Conn:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return reader, writer

    async def acquire(self) -> Conn:
        if self.idle:
            return self.idle.pop()
        if self.count < self.limit:
            self.count += 1
            self.peak = max(self.peak, self.count)
            try:
                return await self._open()
            except BaseException:
                self.count -= 1
                raise
        waiter: asyncio.Future[Conn] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return await waiter

    def release(self, conn: Conn) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self.idle.append(conn)

    def discard(self, conn: Conn | None) -> None:
        if conn is not None:
            with contextlib.suppress(Exception):
                conn[1].close()
        self.count -= 1
        if self.waiters:
            asyncio.get_running_loop().create_task(self._refill())

    async def _refill(self) -> None:
        """Open one more connection and give it to a waiter, or keep it idle."""
        self.count += 1
        self.peak = max(self.peak, self.count)
        try:
            conn = await self._open()
        except OSError:
            self.count -= 1
            return
        self.release(conn)

    async def fill(self, count: int) -> None:
        """Open idle connections until `count` are open (at most `limit`)."""
        wanted = min(count, self.limit) - self.count
        await asyncio.gather(*(self._refill() for _ in range(wanted)))

    def drop_idle(self) -> None:
        """Close idle connections (servers close keep-alives idle for 5 s anyway)."""
        for _, writer in self.idle:
            with contextlib.suppress(Exception):
                writer.close()
        self.count -= len(self.idle)
        self.idle.clear()

    def close(self) -> None:
        for _, writer in self.idle:
            with contextlib.suppress(Exception):
                writer.close()
        self.idle.clear()


async def roundtrip(conn: Conn, request: bytes) -> tuple[int, bytes]:
    reader, writer = conn
    writer.write(request)
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise StaleConnection from exc
        raise
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"content-length:")
    if at < 0:
        raise RuntimeError("response without Content-Length")
    length = int(lower[at + 15 : lower.index(b"\r\n", at)])
    body = await reader.readexactly(length) if length else b""
    return status, body


@dataclass
class PhaseResult:
    offered_rate: float | None
    duration: float
    sent: int = 0
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # seconds, successful only
    elapsed: float = 0.0
    client_cpu: float = 0.0
    connections: int = 0

    @property
    def achieved_rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def summary(self) -> dict[str, Any]:
        from bench.measure import describe

        return {
            "offered_rate": self.offered_rate,
            "duration_s": self.duration,
            "sent": self.sent,
            "ok": self.ok,
            "errors": dict(self.errors),
            "achieved_rate": round(self.achieved_rate, 1),
            "latency_ms": describe(self.latencies),
            "client_cpu_s": round(self.client_cpu, 3),
            "client_cpu_pct": round(100 * self.client_cpu / self.elapsed, 1)
            if self.elapsed
            else None,
            "connections": self.connections,
        }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def open_loop(
    pool: Pool,
    request: bytes,
    rate: float,
    duration: float,
    request_timeout: float = 10.0,
    expect: int = 202,
) -> PhaseResult:
    """Send rate*duration requests on a fixed schedule; latency from the scheduled time.

    Times come from time.perf_counter(): uvloop's loop.time() has millisecond steps.
    """
    result = PhaseResult(offered_rate=rate, duration=duration)
    pool.drop_idle()
    # Start as a client with a warm pool does: enough connections open for 20 ms of
    # requests. Opened during the phase instead, a stall of either server made the load
    # generator open a burst of them (each costs it and the server a connection set-up),
    # and its own loop fell behind its schedule (up to 44 ms seen), charged to the server.
    await pool.fill(max(WARM_CONNECTIONS_MIN, math.ceil(rate * WARM_SECONDS)))
    count = max(1, int(rate * duration))
    cpu0 = _cpu()
    clock = time.perf_counter
    start = clock() + 0.02
    last_done = start

    async def fire(scheduled: float) -> None:
        nonlocal last_done
        conn: Conn | None = None
        try:
            async with asyncio.timeout(max(scheduled + request_timeout - clock(), 0.001)):
                conn = await pool.acquire()
                try:
                    status, _ = await roundtrip(conn, request)
                except StaleConnection:
                    pool.discard(conn)
                    conn = None
                    conn = await pool.acquire()
                    status, _ = await roundtrip(conn, request)
        except TimeoutError:
            result.errors["timeout"] += 1
            if conn is not None:  # never acquired: nothing to give back
                pool.discard(conn)
            return
        except (OSError, asyncio.IncompleteReadError, RuntimeError, ValueError) as exc:
            result.errors[type(exc).__name__] += 1
            if conn is not None:
                pool.discard(conn)
            return
        now = clock()
        pool.release(conn)
        if status == expect:
            result.ok += 1
            result.latencies.append(now - scheduled)
            last_done = max(last_done, now)
        else:
            result.errors[f"http_{status}"] += 1

    tasks = []
    for i in range(count):
        scheduled = start + i / rate
        delay = scheduled - clock()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(scheduled)))
        result.sent += 1
    await asyncio.wait(tasks)
    result.elapsed = max(last_done - start, 1e-9)
    result.client_cpu = _cpu() - cpu0
    result.connections = pool.count
    return result


async def closed_loop(
    pool: Pool, request: bytes, concurrency: int, duration: float, expect: int = 202
) -> PhaseResult:
    """`concurrency` clients each sending the next request as soon as the last answered."""
    clock = time.perf_counter
    result = PhaseResult(offered_rate=None, duration=duration)
    pool.drop_idle()
    cpu0 = _cpu()
    start = clock()
    stop_at = start + duration

    async def client() -> None:
        conn = await pool.acquire()
        try:
            while clock() < stop_at:
                sent = clock()
                result.sent += 1
                try:
                    status, _ = await asyncio.wait_for(roundtrip(conn, request), 30)
                except StaleConnection:
                    result.sent -= 1
                    pool.discard(conn)
                    conn = await pool.acquire()
                    continue
                except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                    result.errors[type(exc).__name__] += 1
                    pool.discard(conn)
                    conn = await pool.acquire()
                    continue
                if status == expect:
                    result.ok += 1
                    result.latencies.append(clock() - sent)
                else:
                    result.errors[f"http_{status}"] += 1
        finally:
            pool.release(conn)

    await asyncio.gather(*(client() for _ in range(concurrency)))
    result.elapsed = clock() - start
    result.client_cpu = _cpu() - cpu0
    result.connections = pool.count
    return result


def wall() -> float:
    return time.time()
