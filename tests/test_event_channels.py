"""A gateway subscribes only to the event channels of the tasks and conversations its own
clients follow (`app/bridge.py`), and leaves them when the last follower goes: events of
a task nobody on it follows never reach it."""

from __future__ import annotations

import json

import redis

from taskrecord import keys
from testbed.process import wait_until
from tests.event_clients import ws_connect, ws_events
from tests.harness import System, submit, wait_terminal


def _subscribers(client: redis.Redis, channel: str) -> int:
    return int(dict(client.pubsub_numsub(channel))[channel.encode()])


def test_a_task_channel_has_a_subscriber_only_while_someone_follows(
    system: System, redis_client: redis.Redis
) -> None:
    with system.client() as api:
        task = submit(api, "nobody follows me [sim:chunks=1]")
        wait_terminal(api, task["task_id"])
    channel = keys.task_events_channel(task["task_id"])
    assert _subscribers(redis_client, channel) == 0
    with ws_connect(system.url) as ws:
        ws.send(json.dumps({"type": "subscribe", "task_id": task["task_id"]}))
        wait_until(lambda: _subscribers(redis_client, channel) == 1, 10, what="subscribed")
        # Its log, caught up: all of it, ending with the one terminal event.
        events = ws_events(ws, until_terminal={task["task_id"]})
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    wait_until(lambda: _subscribers(redis_client, channel) == 0, 10, what="unsubscribed")


def test_a_conversation_channel_follows_its_followers(
    system: System, redis_client: redis.Redis
) -> None:
    session = "channels-1"
    # API_KEY's tenant; the default agent (V1_DEFAULT_AGENT).
    channel = keys.session_events_channel("alpha", "main", session)
    assert _subscribers(redis_client, channel) == 0
    with ws_connect(system.url) as ws:
        ws.send(json.dumps({"type": "subscribe", "session_id": session}))
        json.loads(ws.recv(timeout=10))
        wait_until(lambda: _subscribers(redis_client, channel) == 1, 10, what="subscribed")
        with system.client() as api:
            task = submit(api, "in the conversation [sim:chunks=2]", session_id=session)
        events = ws_events(ws, until_terminal={task["task_id"]})
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        # The task's own channel is not needed for it: nobody follows the task by id.
        assert _subscribers(redis_client, keys.task_events_channel(task["task_id"])) == 0
    wait_until(lambda: _subscribers(redis_client, channel) == 0, 10, what="unsubscribed")
