"""Another tenant cannot follow a task over SSE nor a session over WebSocket, even with
the same session id, a replay, or a cursor naming the other tenant's task."""

from __future__ import annotations

import json

import httpx

from tests.event_clients import TERMINAL, ws_connect, ws_events
from tests.harness import API_KEY, OTHER_API_KEY, System, submit, tag, wait_terminal


def test_another_tenant_cannot_follow_a_task_over_sse(system: System) -> None:
    with system.client() as api:
        task_id = submit(api, "alpha's [sim:chunks=20] [sim:chunk_delay=0.05]")["task_id"]
        url = f"{system.url}/v1/tasks/{task_id}/events"
        beta = {"Authorization": f"Bearer {OTHER_API_KEY}"}
        while_running = httpx.get(url, headers=beta, timeout=10)
        resuming = httpx.get(url, headers={**beta, "Last-Event-ID": "1"}, timeout=10)
        wait_terminal(api, task_id)
        after_end = httpx.get(url, params={"after": 0}, headers=beta, timeout=10)
    for reply in (while_running, resuming, after_end):
        assert reply.status_code == 404, reply.text
        assert reply.json()["error"]["type"] == "not_found"
        assert "alpha's" not in reply.text and "tok0" not in reply.text


def test_another_tenant_following_the_same_session_sees_only_its_own_tasks(
    system: System,
) -> None:
    session = f"shared-{tag()}"
    with (
        ws_connect(system.url, API_KEY) as alpha_ws,
        ws_connect(system.url, OTHER_API_KEY) as beta_ws,
        system.client(API_KEY) as alpha,
        system.client(OTHER_API_KEY) as beta,
    ):
        for ws in (alpha_ws, beta_ws):
            ws.send(json.dumps({"type": "subscribe", "session_id": session}))
            assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
        mine = submit(alpha, "alpha in the session [sim:chunks=5]", session_id=session)
        alpha_events = ws_events(alpha_ws, until_terminal={mine["task_id"]})
        # Beta's socket: alpha's events would have come before its own (one listener, in
        # order), so receiving beta's whole task first shows none of alpha's leaked.
        theirs = submit(beta, "beta in the session [sim:chunks=3]", session_id=session)
        beta_events = ws_events(beta_ws, until_terminal={theirs["task_id"]})
        # A second beta socket asking for a replay and naming alpha's task in its cursors.
        with ws_connect(system.url, OTHER_API_KEY) as nosy:
            nosy.send(json.dumps({"type": "subscribe", "session_id": session, "replay": True,
                                  "cursors": {mine["task_id"]: 0}}))  # fmt: skip
            # (Its replayed events may come before the "subscribed" reply: ws_events skips it.
            # They may also come after the new task's end, which is live while the replay
            # is still being looked up: wait for both tasks' ends.)
            later = submit(beta, "beta again [sim:chunks=2]", session_id=session)
            nosy_events = ws_events(nosy, until_terminal={theirs["task_id"], later["task_id"]})
    assert {e["task_id"] for e in alpha_events} == {mine["task_id"]}
    assert {e["task_id"] for e in beta_events} == {theirs["task_id"]}
    assert beta_events[-1]["type"] in TERMINAL
    # The replay brings beta's own earlier task of the session, never alpha's.
    assert {e["task_id"] for e in nosy_events} == {theirs["task_id"], later["task_id"]}
