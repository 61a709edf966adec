"""One transition script at a time, against the suite's real Valkey: no gateway, no worker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord import keys, live_scripts
from taskrecord.live import LiveStore, pairs
from taskrecord.settings import get_settings


@pytest.fixture
def live(valkey: EmbeddedValkey) -> Iterator[LiveStore]:
    client = redis.Redis.from_url(valkey.url)
    yield LiveStore(client, get_settings(redis_url=valkey.url, v1_url="http://lua-alone"))
    client.close()


def run(live: LiveStore, name: str, task_id: str, *extra: object) -> object:
    call = live.calls._call(live_scripts.load(name), task_id, *extra)  # type: ignore[arg-type]
    return live.run(call)


def test_renew_many_answers_per_task_and_extends_only_owned_leases(live: LiveStore) -> None:
    owned = {"state": "running", "attempt_token": "a", "tenant": "t"}
    ids = ["lua-m1", "lua-m2", "lua-m3"]
    live.redis.hset(keys.task_key(ids[0]), mapping=owned)
    live.redis.hset(keys.task_key(ids[1]), mapping={**owned, "attempt_token": "other"})
    live.redis.hset(keys.task_key(ids[2]), mapping={**owned, "cancel_requested": "1"})
    for task_id in ids:
        live.redis.expire(keys.task_key(task_id), 60)
    call = live.calls.renew_many([(task_id, "a") for task_id in ids], 5)
    assert live.run(call) == [b"ok", b"lost", b"cancel"]
    leased = {m.decode() for m in live.redis.zrange(keys.LEASES, 0, -1)}
    assert ids[0] in leased and ids[2] in leased and ids[1] not in leased
    live.redis.zrem(keys.LEASES, *ids)
    live.redis.delete(*(keys.task_key(task_id) for task_id in ids))


def test_pause_then_resume_a_queued_task_emits_both_events(live: LiveStore) -> None:
    task = keys.task_key("lua-2")
    live.redis.hset(task, mapping={"state": "queued", "tenant": "t", "agent_id": "main"})
    live.redis.expire(task, 60)
    assert run(live, "pause", "lua-2") == b"paused"
    assert run(live, "resume", "lua-2")[0] == b"resumed"  # type: ignore[index]
    kinds = [b'"type":"paused"' in e[1][b"e"] or b'"type":"resumed"' in e[1][b"e"]
             for e in live.redis.xrange(keys.events_key("lua-2"))]  # fmt: skip
    assert kinds == [True, True]
    assert pairs(sum(live.redis.hgetall(task).items(), ()))["state"] == "queued"
    live.redis.delete(task, keys.events_key("lua-2"))
