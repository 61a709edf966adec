"""A queued task whose message was lost between kombu's pop and its `unacked` record (a
worker killed right after BRPOP) is re-dispatched by maintenance (`tasks.lost_messages`);
a task whose message is still in its queue is left alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord import keys
from taskrecord.live import text
from tests.harness import System, new_system, submit, wait_terminal, wait_until
from v1sim.process import SimulatorProcess

ORPHAN_SECONDS = 1.0


@pytest.fixture(scope="module")
def system(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    workdir: Path = tmp_path_factory.mktemp("lost-messages")
    sys_ = new_system(valkey, simulator.url, workdir, ORPHAN_SECONDS=str(ORPHAN_SECONDS))
    try:
        sys_.start_gateway()
        sys_.start_maintenance()  # no worker yet: messages stay in their queue
        yield sys_
    finally:
        sys_.stop()


@pytest.fixture
def rds(system: System) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(system.redis_url)
    yield client
    client.close()


def messages_of(rds: redis.Redis, queue: str, task_id: str) -> list[str]:
    found = [text(m) for m in rds.lrange(queue, 0, -1)]
    return [m for m in found if json.loads(m)["headers"]["id"].partition(".")[0] == task_id]


def queued(rds: redis.Redis, api_submit: dict[str, str]) -> tuple[str, str]:
    task_id = api_submit["task_id"]
    queue = text(rds.hget(keys.task_key(task_id), "queue") or b"")
    assert queue, "the task has no queue"
    wait_until(lambda: messages_of(rds, queue, task_id), 10, 0.05, "its message")
    return task_id, queue


def lose_message(rds: redis.Redis, queue: str, task_id: str) -> None:
    """What a worker killed right after BRPOP leaves: the message in no list, no hash."""
    (message,) = messages_of(rds, queue, task_id)
    assert rds.lrem(queue, 1, message) == 1


def dispatch_of(rds: redis.Redis, task_id: str) -> int:
    return int(rds.hget(keys.task_key(task_id), "dispatch") or 0)


def test_a_task_whose_message_is_in_its_queue_is_left_alone(
    system: System, rds: redis.Redis
) -> None:
    with system.client() as api:
        kept, queue = queued(rds, submit(api, "waiting its turn"))
        witness, witness_queue = queued(rds, submit(api, "message lost"))
    first = dispatch_of(rds, kept)
    lose_message(rds, witness_queue, witness)
    # The witness shows the reconciler swept at least twice since both were eligible.
    wait_until(lambda: messages_of(rds, witness_queue, witness), 20, 0.1, "a re-dispatch")
    assert dispatch_of(rds, witness) == dispatch_of(rds, kept) + 1
    assert dispatch_of(rds, kept) == first
    assert len(messages_of(rds, queue, kept)) == 1
    assert rds.hget(keys.task_key(kept), "state") == b"queued"


def test_a_task_whose_message_was_lost_still_runs(system: System, rds: redis.Redis) -> None:
    with system.client() as api:
        task_id, queue = queued(rds, submit(api, "lost after the pop"))
        lose_message(rds, queue, task_id)
        system.start_worker(concurrency=4)
        done = wait_terminal(api, task_id, 30)
    assert done["state"] == "succeeded", done
    assert dispatch_of(rds, task_id) >= 2  # fenced: a stray old message cannot run it
    # Nothing left behind: no second message of it anywhere.
    assert not messages_of(rds, queue, task_id)
