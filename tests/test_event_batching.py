"""A gevent worker's Celery task events reach monitors in batches (`tasks.event_batching`),
and all of them: what Flower and `celery events` read, checked with Celery's own receiver."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from tests.harness import System, submit, wait_terminal, wait_until

TASK_EVENTS = ("task-received", "task-started", "task-succeeded")


class Monitor:
    """Celery's event receiver (as Flower runs it) on a thread, keeping every event."""

    def __init__(self, broker_url: str) -> None:
        self.app = Celery("monitor", broker=broker_url)
        self.events: list[dict[str, Any]] = []
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.app.connection_for_read() as connection:
            self._receiver = self.app.events.Receiver(
                connection, handlers={"*": self.events.append}
            )
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def types_of(self, task_id: str) -> set[str]:
        return {e["type"] for e in list(self.events) if e.get("uuid") == task_id}

    def __enter__(self) -> Monitor:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(5)
        self.app.close()


def event_messages(pubsub: Any, task_ids: set[str]) -> tuple[int, int]:
    """(broker messages, task events in them) that concern these tasks, read so far."""
    messages = events = 0
    while (item := pubsub.get_message(timeout=0.05)) is not None:
        if item["type"] != "pmessage":
            continue
        body = json.loads(base64.b64decode(json.loads(item["data"])["body"]))
        batch = body if isinstance(body, list) else [body]
        ours = [e for e in batch if e.get("uuid") in task_ids]
        if ours:
            messages, events = messages + 1, events + len(ours)
    return messages, events


@pytest.fixture
def pubsub(redis_client: redis.Redis) -> Iterator[Any]:
    channel = redis_client.pubsub()
    channel.psubscribe("*celeryev*")  # kombu's fanout channel of Celery's event exchange
    yield channel
    channel.close()


def test_task_events_arrive_in_batches_and_none_is_missing(system: System, pubsub: Any) -> None:
    with Monitor(system.redis_url) as monitor, system.client() as api:
        # The receiver listens once it has seen a task's whole life.
        warm = submit(api, "warm-up")["task_id"]
        wait_terminal(api, warm)
        wait_until(lambda: "task-succeeded" in monitor.types_of(warm), 15,
                   what="the receiver to see the warm-up task")  # fmt: skip
        ids = [submit(api, f"batched {i} [sim:chunks=1]")["task_id"] for i in range(20)]
        for task_id in ids:
            assert wait_terminal(api, task_id)["state"] == "succeeded"
        wait_until(lambda: all(monitor.types_of(t) >= set(TASK_EVENTS) for t in ids), 15,
                   what="every task's received, started and succeeded events")  # fmt: skip
    messages, events = event_messages(pubsub, set(ids))
    assert events >= 3 * len(ids)
    # received + started of a task are buffered together at least: fewer messages than events
    assert 0 < messages < events
