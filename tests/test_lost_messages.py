"""A queued task whose message was lost between kombu's pop and its `unacked` record (a
worker killed right after BRPOP) is re-dispatched by maintenance (`tasks.lost_messages`);
a task whose message is still in its queue is left alone."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord import keys
from taskrecord.live import text
from tests.harness import System, submit, wait_terminal, wait_until, without_workers
from v1sim.process import SimulatorProcess

ORPHAN_SECONDS = 1.0


@pytest.fixture(scope="module")
def system(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    workdir = tmp_path_factory.mktemp("lost-messages")
    with without_workers(
        valkey, simulator.url, workdir, ORPHAN_SECONDS=str(ORPHAN_SECONDS)
    ) as sys_:
        yield sys_


def messages_of(redis_client: redis.Redis, queue: str, task_id: str) -> list[str]:
    found = [text(m) for m in redis_client.lrange(queue, 0, -1)]
    return [m for m in found if json.loads(m)["headers"]["id"].partition(".")[0] == task_id]


def queued(redis_client: redis.Redis, api_submit: dict[str, str]) -> tuple[str, str]:
    task_id = api_submit["task_id"]
    queue = text(redis_client.hget(keys.task_key(task_id), "queue") or b"")
    assert queue, "the task has no queue"
    wait_until(lambda: messages_of(redis_client, queue, task_id), 10, 0.05, "its message")
    return task_id, queue


def lose_message(redis_client: redis.Redis, queue: str, task_id: str) -> None:
    """What a worker killed right after BRPOP leaves: the message in no list, no hash."""
    (message,) = messages_of(redis_client, queue, task_id)
    assert redis_client.lrem(queue, 1, message) == 1


def dispatch_of(redis_client: redis.Redis, task_id: str) -> int:
    return int(redis_client.hget(keys.task_key(task_id), "dispatch") or 0)


def test_a_task_whose_message_is_in_its_queue_is_left_alone(
    system: System, redis_client: redis.Redis
) -> None:
    with system.client() as api:
        kept, queue = queued(redis_client, submit(api, "waiting its turn"))
        witness, witness_queue = queued(redis_client, submit(api, "message lost"))
    first = dispatch_of(redis_client, kept)
    lose_message(redis_client, witness_queue, witness)
    # The witness shows the reconciler swept at least twice since both were eligible.
    wait_until(lambda: messages_of(redis_client, witness_queue, witness), 20, 0.1, "a re-dispatch")
    assert dispatch_of(redis_client, witness) == dispatch_of(redis_client, kept) + 1
    assert dispatch_of(redis_client, kept) == first
    assert len(messages_of(redis_client, queue, kept)) == 1
    assert redis_client.hget(keys.task_key(kept), "state") == b"queued"


def test_a_task_whose_message_was_lost_still_runs(
    system: System, redis_client: redis.Redis
) -> None:
    with system.client() as api:
        task_id, queue = queued(redis_client, submit(api, "lost after the pop"))
        lose_message(redis_client, queue, task_id)
        system.start_worker(concurrency=4)
        done = wait_terminal(api, task_id, 30)
    assert done["state"] == "succeeded", done
    assert dispatch_of(redis_client, task_id) >= 2  # fenced: a stray old message cannot run it
    # Nothing left behind: no second message of it anywhere.
    assert not messages_of(redis_client, queue, task_id)
