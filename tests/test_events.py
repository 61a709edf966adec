"""Live progress: per-task event log, WebSocket and SSE, resumable, one terminal event."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis
from websockets.exceptions import ConnectionClosed

from tests.event_clients import TERMINAL, sse_events, ws_connect, ws_events
from tests.harness import System, submit, wait_terminal


def assert_well_formed(events: list[dict[str, object]], task_id: str) -> None:
    mine = [e for e in events if e["task_id"] == task_id]
    assert [e["seq"] for e in mine] == list(range(1, len(mine) + 1)), "seq has gaps/dups"
    types = [e["type"] for e in mine]
    assert types[0] == "queued" and types[1] == "started"
    assert types[-1] in TERMINAL and sum(t in TERMINAL for t in types) == 1


def test_session_subscriber_sees_whole_lifecycle_in_order(system: System) -> None:
    session = "s-live-1"
    with ws_connect(system.url) as ws, system.client() as api:
        ws.send(json.dumps({"type": "subscribe", "session_id": session}))
        assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
        task = submit(api, "stream [sim:chunks=40] [sim:chunk_delay=0.02]", session_id=session)
        events = ws_events(ws, until_terminal={task["task_id"]})
        done = wait_terminal(api, task["task_id"])
    assert_well_formed(events, task["task_id"])
    progress = [e for e in events if e["type"] == "progress"]
    # Coalesced: 40 deltas over ~0.8 s arrive as far fewer events, and nothing is lost.
    assert 2 <= len(progress) < 40
    text = "".join(e["data"]["delta"] for e in progress)  # type: ignore[index]
    assert text == done["result"]["content"] == "".join(f"tok{i} " for i in range(40))
    assert events[-1]["data"]["result"]["content"] == text  # type: ignore[index]
    assert events[0]["data"] == {"queue": "short", "priority": 5}


def test_websocket_resume_gets_exactly_the_missed_events(system: System) -> None:
    with system.client() as api:
        task = submit(api, "resume me [sim:chunks=30] [sim:chunk_delay=0.05]")
    task_id = task["task_id"]
    with ws_connect(system.url) as ws:
        ws.send(json.dumps({"type": "subscribe", "task_id": task_id}))
        first = ws_events(ws, count=3)
    last = first[-1]["seq"]
    with ws_connect(system.url) as ws:
        ws.send(json.dumps({"type": "subscribe", "task_id": task_id, "after_seq": last}))
        rest = ws_events(ws, until_terminal={task_id})
    assert_well_formed(first + rest, task_id)
    assert rest[0]["seq"] == last + 1


def test_sse_resume_with_last_event_id(system: System) -> None:
    with system.client() as api:
        task = submit(api, "sse [sim:chunks=30] [sim:chunk_delay=0.05]")
    task_id = task["task_id"]
    first = sse_events(system.url, task_id, stop_after=3)
    rest = sse_events(system.url, task_id, last_event_id=str(first[-1]["seq"]))
    assert_well_formed(first + rest, task_id)
    # A finished task still yields its whole log, ending with the terminal event.
    again = sse_events(system.url, task_id)
    assert again == first + rest


def test_websocket_without_key_gets_no_socket(system: System) -> None:
    with ws_connect(system.url, api_key=None) as ws:
        ws.send(json.dumps({"type": "subscribe", "task_id": "x"}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    with ws_connect(system.url, api_key=None) as ws:
        ws.send(json.dumps({"type": "auth", "api_key": "test-key-alpha"}))
        assert json.loads(ws.recv(timeout=10)) == {"type": "authenticated"}


def test_other_tenant_cannot_follow_a_task(system: System) -> None:
    with system.client() as api:
        task = submit(api, "mine")
    with ws_connect(system.url, api_key="test-key-beta") as ws:
        ws.send(json.dumps({"type": "subscribe", "task_id": task["task_id"]}))
        reply = json.loads(ws.recv(timeout=10))
    assert reply["type"] == "error"


def test_any_gateway_replica_serves_any_client(system: System, tmp_path: Path) -> None:
    second = System(system.redis_base, system.db, system.v1_url, system.workdir)
    try:
        second.start_gateway()
        with ws_connect(second.url) as ws, system.client() as api:
            ws.send(json.dumps({"type": "subscribe", "session_id": "s-replica"}))
            json.loads(ws.recv(timeout=10))
            task = submit(api, "via A [sim:chunks=5]", session_id="s-replica")
            events = ws_events(ws, until_terminal={task["task_id"]})
        assert_well_formed(events, task["task_id"])
    finally:
        second.stop()


def test_every_task_of_a_mixed_run_has_exactly_one_terminal_event(
    system: System, redis_client: redis.Redis
) -> None:
    kinds = [
        "ok [sim:chunks=3]",
        "bad [sim:fail=400]",
        "slow [sim:delay=30]",
        "cut [sim:chunks=5] [sim:error_after=2]",
    ]
    ids: list[str] = []
    with system.client() as api:
        for i in range(200):
            ids.append(submit(api, f"{kinds[i % 4]} #{i}")["task_id"])
        for task_id in ids[2::4]:  # the slow ones: cancel (queued or running)
            assert api.post(f"/v1/tasks/{task_id}/cancel").status_code in (200, 202)
        states = [wait_terminal(api, task_id, timeout=120)["state"] for task_id in ids]
    assert states.count("cancelled") == 50
    assert states.count("succeeded") == 50 and states.count("failed") == 100
    for task_id in ids:
        log = [json.loads(f[b"e"]) for _id, f in redis_client.xrange(f"v2:events:{task_id}")]
        assert sum(e["type"] in TERMINAL for e in log) == 1, log
        assert log[-1]["type"] in TERMINAL
