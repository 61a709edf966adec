"""Helpers shared by the V1 simulator's test files (named test_v1sim_* to sit beside them;
it holds no tests)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from v1sim.process import SimulatorProcess

TOKEN = "test-sim-token"
# The contract tests' own simulator (fixtures `sim` and `client` in tests/conftest.py).
CAPACITY = 3
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAIN = {**AUTH, "x-openclaw-agent-id": "main"}
CHAT = "/v1/chat/completions"


def new_tag() -> str:
    return uuid.uuid4().hex[:12]


def chat(text: str, model: str = "openclaw", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def sse_data(body: str) -> list[str]:
    """The `data:` payloads of an SSE body, checking the blank-line framing on the way."""
    events = body.split("\n\n")
    assert events[-1] == ""
    assert all(e.startswith("data: ") for e in events[:-1])
    return [e.removeprefix("data: ") for e in events[:-1]]


def wait_for(predicate: Callable[[], Any], timeout: float = 3.0) -> Any:
    """Poll until predicate returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError(f"condition not met within {timeout}s")


def one_record(sim: SimulatorProcess, tag: str) -> dict[str, Any]:
    records = sim.requests(tag)
    assert len(records) == 1, records
    return records[0]


def wait_disconnected(sim: SimulatorProcess, tag: str) -> dict[str, Any]:
    """The tagged request once the simulator has seen its client go and closed its record
    (it marks the disconnect first, then waits for the aborted run, then stamps ended_at)."""
    records = wait_for(
        lambda: [r for r in sim.requests(tag) if r["disconnected"] and r["ended_at"]],
        timeout=2.0,
    )
    record: dict[str, Any] = records[0]
    assert record["outcome"] == "disconnected" and record["ended_at"] is not None
    return record


async def post_all(url: str, bodies: list[dict[str, Any]]) -> list[int]:
    """Send every body at once (agent main); their statuses, in order."""
    async with httpx.AsyncClient(base_url=url, timeout=30.0, trust_env=False) as http:
        responses = await asyncio.gather(*(http.post(CHAT, json=b, headers=MAIN) for b in bodies))
    return [r.status_code for r in responses]
