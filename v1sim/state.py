"""Configuration and in-memory state of the V1 simulator: admission gates, records, stats,
session transcripts."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from v1sim.directives import Directives
from v1sim.transcripts import MAX_ENTRIES, MAX_SESSIONS, Transcripts

Outcome = Literal["ok", "error_status", "error_chunk", "disconnected", "rejected"]


@dataclass(kw_only=True)
class SimConfig:
    """How the simulated gateway is set up; defaults match a stock single-agent V1."""

    token: str
    host: str = "127.0.0.1"
    port: int = 18790
    agents: list[str] = field(default_factory=lambda: ["main"])
    # None: the only agent when one is configured; with several, calls must name theirs
    # (real V1's 400). Set it to accept owner-less calls with several agents.
    default_agent: str | None = None
    capacity: int = 8
    # Added to every admitted run, to mimic V1's own ~200 ms per call.
    overhead_seconds: float = 0.0
    # Same-session calls arriving this soon after a run started get V1's 500.
    session_conflict_seconds: float = 0.4
    max_records: int = 100_000
    # Transcripts kept: the most recently used sessions, the newest entries of each.
    max_sessions: int = MAX_SESSIONS
    max_session_entries: int = MAX_ENTRIES

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("SimConfig.token must not be empty")
        if not self.agents or any(not a or ":" in a for a in self.agents):
            raise ValueError("SimConfig.agents needs at least one id, without ':'")
        if self.default_agent is not None and self.default_agent not in self.agents:
            raise ValueError(f"default_agent {self.default_agent!r} is not in agents")
        if self.capacity < 1:
            raise ValueError("SimConfig.capacity must be at least 1")
        if self.max_sessions < 1 or self.max_session_entries < 1:
            raise ValueError("SimConfig.max_sessions and max_session_entries must be at least 1")
        if self.overhead_seconds < 0 or self.session_conflict_seconds < 0:
            raise ValueError("SimConfig durations must not be negative")


class RequestRecord(TypedDict):
    id: str  # the chatcmpl id the response carries (rejected calls never see theirs)
    agent: str | None
    session: str | None  # None for a one-off session (no `user`, no session key)
    stream: bool | None
    tag: str | None
    message_sha256: str | None
    unknown_directives: list[str]
    invalid_directives: list[str]
    status: int | None
    started_at: float
    admitted_at: float | None
    ended_at: float | None
    disconnected: bool
    outcome: Outcome | None
    # "<role>: <text>" of what the model saw, newest lines kept; empty when no run started.
    model_input: list[str]


class FifoGate:
    """Counting gate that hands slots out strictly in arrival order.

    asyncio.Semaphore lets a newcomer take a slot freed while a waiter is being woken;
    V1's lanes are FIFO, and tests rely on that order.
    """

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.done())

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a slot while being cancelled: pass it on
            else:
                self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._free += 1


class SessionBusy(Exception):
    """A same-session run started moments ago (V1's SessionWorkStartChangedError)."""


class _Lane:
    __slots__ = ("since", "waiters")

    def __init__(self, since: float) -> None:
        self.since = since  # when the current holder got the session
        self.waiters: deque[asyncio.Future[None]] = deque()


class SessionLanes:
    """One run per session; a lane exists only while its session is held."""

    def __init__(self, conflict_seconds: float) -> None:
        self._conflict = conflict_seconds
        self._lanes: dict[str, _Lane] = {}

    async def acquire(self, session: str) -> None:
        now = time.monotonic()
        lane = self._lanes.get(session)
        if lane is None:
            self._lanes[session] = _Lane(now)
            return
        if now - lane.since < self._conflict:
            raise SessionBusy(session)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lane.waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(session)  # handed the session while being cancelled: pass it on
            else:
                lane.waiters.remove(waiter)
            raise

    def release(self, session: str) -> None:
        lane = self._lanes[session]
        while lane.waiters:
            waiter = lane.waiters.popleft()
            if not waiter.done():
                lane.since = time.monotonic()
                waiter.set_result(None)
                return
        del self._lanes[session]


class SimState:
    """Everything one simulator instance remembers; lives as long as its app."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.capacity = FifoGate(config.capacity)
        self.sessions = SessionLanes(config.session_conflict_seconds)
        self.transcripts = Transcripts(
            max_sessions=config.max_sessions, max_entries=config.max_session_entries
        )
        self._records: deque[RequestRecord] = deque(maxlen=config.max_records)
        # Attempts per message digest, only for messages carrying a fail directive.
        self._attempts: dict[str, int] = {}
        self._error_attempts: dict[str, int] = {}
        self.active = self.peak_active = 0
        self.in_flight = self.peak_in_flight = 0
        self.total = 0

    @staticmethod
    def digest(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def open_record(self) -> RequestRecord:
        record: RequestRecord = {
            "id": f"chatcmpl_{uuid.uuid4()}",
            "agent": None,
            "session": None,
            "stream": None,
            "tag": None,
            "message_sha256": None,
            "unknown_directives": [],
            "invalid_directives": [],
            "status": None,
            "started_at": time.time(),
            "admitted_at": None,
            "ended_at": None,
            "disconnected": False,
            "outcome": None,
            "model_input": [],
        }
        self._records.append(record)
        self.total += 1
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return record

    def close_record(self, record: RequestRecord) -> None:
        record["ended_at"] = time.time()
        self.in_flight -= 1

    def run_started(self, record: RequestRecord) -> None:
        record["admitted_at"] = time.time()
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)

    def run_ended(self) -> None:
        self.active -= 1

    def failing_status(self, digest: str, directives: Directives) -> int | None:
        """Count this attempt; the status to fail it with, or None to answer normally."""
        if directives.fail_status is None:
            return None
        attempt = self._attempts.get(digest, 0) + 1
        self._attempts[digest] = attempt
        if directives.fail_times is None or attempt <= directives.fail_times:
            return directives.fail_status
        return None

    def errors_this_attempt(self, digest: str, directives: Directives) -> bool:
        """Count this attempt of an `error_after` message; True if it gets the error chunk."""
        if directives.error_after is None:
            return False
        if directives.error_times is None:
            return True
        attempt = self._error_attempts.get(digest, 0) + 1
        if len(self._error_attempts) > 100_000:  # bounded memory, like the other counters
            self._error_attempts.clear()
        self._error_attempts[digest] = attempt
        return attempt <= directives.error_times

    def records(self, tag: str | None = None) -> list[RequestRecord]:
        return [r for r in self._records if tag is None or r["tag"] == tag]

    def stats(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "peak_active": self.peak_active,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "waiting_capacity": self.capacity.waiting,
            "capacity": self.config.capacity,
            "total": self.total,
        }

    def reset(self) -> None:
        # Peaks restart from what is running now, so they stay true after the reset.
        self._records.clear()
        self._attempts.clear()
        self._error_attempts.clear()
        self.transcripts.clear()
        self.peak_active = self.active
        self.peak_in_flight = self.in_flight
        self.total = 0
