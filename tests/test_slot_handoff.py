"""Handing a freed V1 slot to the next task, one script at a time against the suite's real
Valkey (no gateway, no worker): the woken task's slot is reserved until it claims it, a
lapsed reservation is passed on by maintenance's wake_waiting, and a re-run or woken task
is published at the head of its queue, new work at the tail (issue 13)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord import keys
from taskrecord.live import LiveStore, claim_result, finalize_result, text
from taskrecord.publish import publish_due
from taskrecord.settings import get_settings


@pytest.fixture
def live(valkey: EmbeddedValkey) -> Iterator[LiveStore]:
    """One V1 slot, on a budget of its own (the budget's keys derive from the V1 URL)."""
    client = redis.Redis.from_url(valkey.url)
    settings = get_settings(redis_url=valkey.url, v1_url=f"http://handoff-{uuid.uuid4().hex}",
                            v1_max_concurrency=1)  # fmt: skip
    yield LiveStore(client, settings)
    client.close()


def new_task(live: LiveStore, queue: str, **extra: str) -> str:
    task_id = f"handoff-{uuid.uuid4().hex[:10]}"
    live.redis.hset(keys.task_key(task_id), mapping={
        "state": "queued", "tenant": "t", "agent_id": "main", "priority": "5",
        "created_at": f"{time.time():.6f}", "queue": queue, "dispatch": "1",
    })  # fmt: skip
    if extra:
        live.redis.hset(keys.task_key(task_id), mapping=dict(extra.items()))
    live.redis.expire(keys.task_key(task_id), 60)
    return task_id


def claim(live: LiveStore, task_id: str) -> str:
    dispatch = text(live.redis.hget(keys.task_key(task_id), "dispatch"))
    call = live.calls.claim(task_id, "w", 30.0, f"tok-{task_id}", dispatch)
    return claim_result(live.run(call)).outcome


def succeed(live: LiveStore, task_id: str) -> list[str]:
    call = live.calls.finalize(task_id, "succeeded", token=f"tok-{task_id}", result={})
    outcome = finalize_result(live.run(call))
    assert outcome.ended
    return outcome.woken


def test_a_woken_task_keeps_the_freed_slot_until_it_claims_it(live: LiveStore) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    first, waiting = new_task(live, queue), new_task(live, queue)
    assert claim(live, first) == "claimed"
    assert claim(live, waiting) == "wait_capacity"
    assert succeed(live, first) == [waiting]
    # The finishing script pushed the woken task's message (next dispatch) at the head.
    assert message_ids(live, queue) == [f"{waiting}.2"]
    # A newcomer fetched before the woken task's message cannot take its slot.
    newcomer = new_task(live, queue)
    assert claim(live, newcomer) == "wait_capacity"
    assert claim(live, waiting) == "claimed"
    # The newcomer is next in line: the slot goes to it when `waiting` ends.
    assert succeed(live, waiting) == [newcomer]
    assert claim(live, newcomer) == "claimed"
    succeed(live, newcomer)
    live.redis.delete(queue)


def test_a_lapsed_reservation_is_passed_on_by_wake_waiting(live: LiveStore) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    first, stuck, later = (new_task(live, queue) for _ in range(3))
    assert claim(live, first) == "claimed"
    assert [claim(live, stuck), claim(live, later)] == ["wait_capacity", "wait_capacity"]
    assert succeed(live, first) == [stuck]
    assert [text(v) for v in live.run(live.calls.wake_waiting())] == []  # slot reserved
    # `stuck`'s message is never fetched (its queue paused, say): its reservation lapses.
    slots = keys.PREFIX + ":v1slots:" + live.calls.budget
    live.redis.zadd(slots, {stuck: time.time() - 1})
    assert [text(v) for v in live.run(live.calls.wake_waiting())] == [later]
    assert claim(live, stuck) == "wait_capacity"  # it waits for the next slot again
    assert claim(live, later) == "claimed"
    assert succeed(live, later) == [stuck]
    assert claim(live, stuck) == "claimed"
    succeed(live, stuck)
    live.redis.delete(queue)


def due(live: LiveStore, task_id: str) -> str:
    live.redis.zadd(keys.DISPATCH_DUE, {task_id: time.time()})
    return task_id


def message_ids(live: LiveStore, queue: str) -> list[str]:
    """The queue's message ids, next out first (kombu LPUSHes and BRPOPs: the right end)."""
    return [json.loads(m)["headers"]["id"] for m in reversed(live.redis.lrange(queue, 0, -1))]


def test_reruns_and_woken_tasks_are_published_at_the_head_new_work_at_the_tail(
    live: LiveStore,
) -> None:
    queue = f"q-{uuid.uuid4().hex[:8]}"
    backlog = [due(live, new_task(live, queue)) for _ in range(3)]
    rerun = due(live, new_task(live, queue, queue_head="1", dispatch="2"))
    assert publish_due(live, [*backlog, rerun]) == 4
    # Later re-runs queue behind the earlier ones, all ahead of the backlog.
    later = [due(live, new_task(live, queue, queue_head="1", dispatch="3")) for _ in range(2)]
    assert publish_due(live, [later[0]]) + publish_due(live, [later[1]]) == 2
    assert message_ids(live, queue) == [f"{rerun}.2", *(f"{t}.3" for t in later), *backlog]
    assert text(live.redis.hget(keys.task_key(rerun), "queue_head")) == ""
    # Published once: a task no longer due is not pushed again.
    assert publish_due(live, [rerun, *backlog]) == 0
    assert live.redis.llen(queue) == 6
    # Once the head has been taken, the next re-run is next out.
    live.redis.rpop(queue, 3)
    last = due(live, new_task(live, queue, queue_head="1", dispatch="2"))
    assert publish_due(live, [last]) == 1
    assert message_ids(live, queue)[0] == f"{last}.2"
    assert live.redis.ttl(keys.QUEUE_HEAD_LAST + queue) > 0
    live.redis.delete(queue, keys.QUEUE_HEAD_LAST + queue)
