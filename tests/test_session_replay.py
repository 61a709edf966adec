"""A WebSocket session replay brings the conversation's tasks SQL does not hold yet.

A gateway alone (no maintenance to copy new tasks into SQL, no worker: the test plays the
worker's part with the real claim and finish scripts, writing no SQL row, as a worker whose
SQL copy has not landed yet). A subscriber always follows the session's live tasks; the
replay must also bring a task that has already ended, from the conversation's index of
recent tasks in Redis, and only the subscriber's own tenant's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord import keys, live_scripts
from taskrecord.live import LiveStore, claim_result, finalize_result, text
from taskrecord.settings import get_settings
from tests.event_clients import TERMINAL, ws_connect, ws_events
from tests.harness import API_KEY, OTHER_API_KEY, System, new_system, submit, tag

V1_URL = "http://127.0.0.1:9"  # never called: no worker


@pytest.fixture
def gateway_alone(valkey: EmbeddedValkey, tmp_path: Path) -> Iterator[System]:
    system = new_system(valkey, V1_URL, tmp_path)
    try:
        system.start_gateway(ready_path="/healthz")
        yield system
    finally:
        system.stop()


def run_to_success(system: System, task_id: str) -> None:
    """What a worker does to a task, in Redis only: claim it, then finish it."""
    client = redis.Redis.from_url(system.redis_url)
    try:
        live = LiveStore(client, get_settings(redis_url=system.redis_url, v1_url=V1_URL,
                                              v1_max_concurrency=100))  # fmt: skip
        dispatch = text(client.hget(keys.task_key(task_id), "dispatch"))
        claim = live.calls.claim(task_id, "w", 30.0, "tok", dispatch)
        assert claim_result(live.run(claim)).outcome == "claimed"
        finish = live.calls.finalize(task_id, "succeeded", token="tok", result={"content": "x"})
        assert finalize_result(live.run(finish)).ended
    finally:
        client.close()


def test_a_replay_brings_an_ended_task_sql_does_not_hold_yet(gateway_alone: System) -> None:
    system = gateway_alone
    session = f"conv-{tag()}"
    with system.client(API_KEY) as alpha, system.client(OTHER_API_KEY) as beta:
        ended = submit(alpha, "first", session_id=session)["task_id"]
        waiting = submit(alpha, "second", session_id=session)["task_id"]
        theirs = submit(beta, "beta's", session_id=session)["task_id"]
        run_to_success(system, ended)
        listed = alpha.get("/v1/tasks", params={"session_id": session})
    # SQL holds none of them (the listing reads SQL): only Redis knows them.
    assert listed.status_code == 200, listed.text
    assert listed.json()["tasks"] == []
    with ws_connect(system.url, API_KEY) as ws, system.client(API_KEY) as alpha:
        ws.send(json.dumps({"type": "subscribe", "session_id": session, "replay": True}))
        events: list[dict[str, Any]] = []
        while not (
            any(e["task_id"] == ended and e["type"] in TERMINAL for e in events)
            and any(e["task_id"] == waiting for e in events)
        ):
            events += ws_events(ws, count=1, timeout=10)
        # A task submitted now arrives live; whatever the replay sent came before it.
        later = submit(alpha, "third", session_id=session)["task_id"]
        while not any(e["task_id"] == later for e in events):
            events += ws_events(ws, count=1, timeout=10)
    by_task: dict[str, list[str]] = {}
    for event in events:
        by_task.setdefault(event["task_id"], []).append(event["type"])
    assert set(by_task) == {ended, waiting, later}, by_task
    assert by_task[ended][0] == "queued" and by_task[ended][-1] in TERMINAL, by_task
    # Each event once: the waiting task is both offered as a live task of the session and
    # named by the replay.
    assert by_task[waiting] == ["queued"], by_task
    assert len({(e["task_id"], e["seq"]) for e in events}) == len(events)
    assert theirs not in by_task


def test_the_conversation_index_is_bounded_and_expires(gateway_alone: System) -> None:
    system = gateway_alone
    session = f"conv-{tag()}"
    with system.client(API_KEY) as alpha:
        submit(alpha, "one", session_id=session)
    client = redis.Redis.from_url(system.redis_url)
    index = keys.session_recent_key("alpha", "main", session)
    assert client.zcard(index) == 1
    assert client.ttl(index) > 0
    # The bound the create script keeps (ZREMRANGEBYRANK ... -201) is SESSION_RECENT.
    assert "ZREMRANGEBYRANK', recent, 0, -200 - 1)" in live_scripts.CREATE
    assert keys.SESSION_RECENT == 200
