"""Maintenance puts back a message whose worker died between fetching and claiming it
(`tasks.orphans`), even behind many messages of running tasks (left in kombu's `unacked`
hash by workers whose claims did not remove them: the test writes them as kombu would), and
does not look at those settled messages again round after round."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord import keys
from taskrecord.live import text
from tests.harness import System, submit, wait_until, without_workers
from tests.test_lost_messages import messages_of, queued
from v1sim.process import SimulatorProcess

ORPHAN_SECONDS = 1.0
RUNNING = 230  # more than one round's page (200): the orphan sits behind all of them


@pytest.fixture(scope="module")
def system(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    workdir = tmp_path_factory.mktemp("orphans")
    with without_workers(
        valkey, simulator.url, workdir, ORPHAN_SECONDS=str(ORPHAN_SECONDS)
    ) as sys_:
        yield sys_


def fetch(redis_client: redis.Redis, queue: str, task_id: str, fetched_at: float) -> str:
    """What kombu does when a worker takes a message (acks_late): out of the queue list,
    into `unacked` under its delivery tag, indexed by fetch time."""
    (raw,) = messages_of(redis_client, queue, task_id)
    message = json.loads(raw)
    tag = str(message["properties"]["delivery_tag"])
    with redis_client.pipeline() as pipe:
        pipe.lrem(queue, 1, raw)
        pipe.hset("unacked", tag, json.dumps([message, "", queue]))
        pipe.zadd("unacked_index", {tag: fetched_at})
        pipe.execute()
    return tag


def calls(redis_client: redis.Redis, command: str) -> int:
    return int(redis_client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_orphan_behind_running_tasks_is_restored_and_settled_ones_are_left(
    system: System, redis_client: redis.Redis
) -> None:
    fetched_at = time.time() - 60
    tags = []
    with system.client() as api:
        for i in range(RUNNING):
            task_id, queue = queued(redis_client, submit(api, f"running {i} [sim:delay=0]"))
            tags.append(fetch(redis_client, queue, task_id, fetched_at + i * 0.001))
            # Claimed by the worker that fetched it (the claim's own fields).
            redis_client.hset(keys.task_key(task_id), "state", "running")
        orphan_id, queue = queued(redis_client, submit(api, "orphan [sim:delay=0]"))
        orphan_tag = fetch(redis_client, queue, orphan_id, fetched_at + 1)
    wait_until(
        lambda: messages_of(redis_client, queue, orphan_id), 15, 0.1, "the orphan back in its queue"
    )
    assert redis_client.hget("unacked", orphan_tag) is None
    # Running tasks keep their messages.
    assert all(redis_client.hexists("unacked", tag) for tag in tags)
    # HEXISTS is restore_orphan.lua's first command: how many messages maintenance looked
    # at, over several of its rounds (each one runs a few ZRANGEBYSCOREs).
    looked, rounds = calls(redis_client, "hexists"), calls(redis_client, "zrangebyscore")
    wait_until(
        lambda: calls(redis_client, "zrangebyscore") - rounds >= 40, 15, 0.1, "maintenance rounds"
    )
    assert calls(redis_client, "hexists") - looked < 20  # the old sweep: 200 in every round
    with redis_client.pipeline() as pipe:
        for tag in tags:
            pipe.hdel("unacked", tag)
            pipe.zrem("unacked_index", tag)
        pipe.execute()
    assert text(redis_client.hget(keys.task_key(orphan_id), "state") or b"") == "queued"
