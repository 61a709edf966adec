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


def test_renew_refuses_a_task_it_does_not_own(live: LiveStore) -> None:
    live.redis.hset(keys.task_key("lua-1"), mapping={"state": "running", "attempt_token": "a"})
    live.redis.expire(keys.task_key("lua-1"), 60)
    assert run(live, "renew", "lua-1", "other-token", 5) == b"lost"
    assert run(live, "renew", "lua-1", "a", 5) == b"ok"


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
