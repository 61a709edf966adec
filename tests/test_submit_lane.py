"""`POST /v1/tasks` answered by the submit lane (`app/submit_fast.py`) is answered exactly as
by the FastAPI route it stands in for.

The lane takes `Content-Type: application/json`; a `+json` type FastAPI also parses as JSON
is handed to the route. Both are sent the same requests here and must answer the same
status, the same headers and the same body (task ids and times aside)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from tests.harness import API_KEY, System

LANE = "application/json"
ROUTE = "application/vnd.openclaw+json"  # parsed as JSON by FastAPI, not taken by the lane
_VARIABLE = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # task ids
    r"|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?"  # times
)


def _send(system: System, body: bytes, content_type: str, **headers: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": content_type, **headers}
    return httpx.post(f"{system.url}/v1/tasks", content=body, headers=headers, timeout=30)


def _shape(response: httpx.Response) -> tuple[int, list[tuple[str, str]], str]:
    """What must agree: status, headers (in order; the date aside), body; ids and times
    replaced, and a body length that differs only with them."""
    headers = [(k, _VARIABLE.sub("X", v)) for k, v in response.headers.items() if k != "date"]
    headers = [(k, "N") if k == "content-length" else (k, v) for k, v in headers]
    return response.status_code, headers, _VARIABLE.sub("X", response.text)


@pytest.mark.parametrize(
    "body",
    [
        {"message": "lane and route [sim:chunks=1]", "estimated_seconds": 5},
        {"messages": [{"role": "user", "content": "hi"}], "priority": 7, "metadata": {"a": 1}},
        {"message": "scheduled", "delay_seconds": 3600},
        {"message": ""},
        {"message": "hi", "priority": 11},
        {"message": "hi", "surprise": 1},
        {"message": "x", "if_busy": "reject"},
        {"message": "hi", "agent_id": "no-such-agent"},
        {"message": "hi", "webhook_url": "ftp://example.com"},
        [1, 2],
    ],
)
def test_the_lane_answers_as_the_route_does(system: System, body: Any) -> None:
    raw = json.dumps(body).encode()
    # The shared system's other tests finish tasks of agent `main` meanwhile: its duration
    # estimate may turn from heuristic to learned between the two submits (seen once). It
    # turns once, so a second pair agrees unless the two paths really differ.
    for _ in range(2):
        lane, route = _send(system, raw, LANE), _send(system, raw, ROUTE)
        if _shape(lane) == _shape(route):
            break
    assert lane.status_code != 500
    assert _shape(lane) == _shape(route)


@pytest.mark.parametrize(
    "raw", [b"{not json", b'{"message": NaN}', b"", b'{"message": "\\ud800"}', b"\xff\xfe"]
)
def test_bodies_the_lane_hands_on_get_the_routes_answer(system: System, raw: bytes) -> None:
    lane, route = _send(system, raw, LANE), _send(system, raw, ROUTE)
    assert lane.status_code in (400, 422)
    assert _shape(lane) == _shape(route)


def test_an_idempotent_replay_through_the_lane_gives_the_first_task(system: System) -> None:
    raw = json.dumps({"message": "once [sim:chunks=1]"}).encode()
    key = f"lane-{id(raw)}"
    first = _send(system, raw, LANE, **{"Idempotency-Key": key})
    again = _send(system, raw, LANE, **{"Idempotency-Key": key})
    other = _send(system, b'{"message": "other"}', LANE, **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert again.json()["task_id"] == first.json()["task_id"]
    assert again.headers["location"] == first.headers["location"]
    assert other.status_code == 409
    assert other.json()["error"]["type"] == "idempotency_conflict"
