"""Small real clients for the event endpoints (WebSocket and SSE) used by the tests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from tasks.v1_client import sse_lines
from tests.harness import API_KEY

TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}


@contextmanager
def ws_connect(base_url: str, api_key: str | None = API_KEY) -> Iterator[ClientConnection]:
    url = base_url.replace("http://", "ws://") + "/v1/ws"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    with connect(url, additional_headers=headers, open_timeout=10) as ws:
        yield ws


def ws_events(
    ws: ClientConnection,
    count: int | None = None,
    timeout: float = 30,
    until_terminal: set[str] | None = None,
) -> list[dict[str, Any]]:
    """Receive task events (skipping control messages) until `count`, or until every task
    in `until_terminal` has had its terminal event."""
    events: list[dict[str, Any]] = []
    pending = set(until_terminal or ())
    deadline = time.monotonic() + timeout
    while True:
        if count is not None and len(events) >= count:
            return events
        if until_terminal is not None and not pending:
            return events
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out; got {len(events)} events: {events[-3:]}")
        message = json.loads(ws.recv(timeout=remaining))
        if "seq" not in message:
            continue
        events.append(message)
        if message["type"] in TERMINAL:
            pending.discard(message["task_id"])


def sse_events(
    base_url: str,
    task_id: str,
    *,
    last_event_id: str | None = None,
    stop_after: int | None = None,
    timeout: float = 30,
) -> list[dict[str, Any]]:
    """Read the SSE stream; stop after `stop_after` events (disconnecting) or at its end."""
    headers = {"Authorization": f"Bearer {API_KEY}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    events: list[dict[str, Any]] = []
    with httpx.stream(
        "GET", f"{base_url}/v1/tasks/{task_id}/events", headers=headers, timeout=timeout
    ) as response:
        assert response.status_code == 200, response.read()
        current: dict[str, str] = {}
        # Split only at CR/LF, as SSE does: event JSON may hold a raw U+2028.
        for line in sse_lines(response.iter_bytes()):
            if line == "":
                if "data" in current:
                    event = json.loads(current["data"])
                    assert str(event["seq"]) == current.get("id")
                    assert event["type"] == current.get("event")
                    events.append(event)
                    if stop_after is not None and len(events) >= stop_after:
                        return events
                current = {}
                continue
            name, _, value = line.partition(":")
            if name:
                current[name] = value.lstrip(" ")
    return events
