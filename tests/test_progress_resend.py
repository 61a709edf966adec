"""Progress while Redis does not answer (a Sentinel failover, a cut link), against the
suite's real Valkey: the run goes on, the text waits for the next flush, and a delta sent
again because its answer was lost is not appended twice (progress.lua counts what landed).
Before, the error ended the run in its worker, which then never learnt its lease was lost
(tests_cluster/test_d_worker_partitioned.py caught it)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import gevent
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from deploy.embedded_valkey import EmbeddedValkey, free_port
from taskrecord import keys
from taskrecord.live import LiveStore
from taskrecord.settings import get_settings
from tasks.errors import LeaseLost
from tasks.progress import ProgressEmitter

TOKEN = "attempt-token"


@pytest.fixture
def live(valkey: EmbeddedValkey) -> Iterator[LiveStore]:
    client = redis.Redis.from_url(valkey.url)
    yield LiveStore(client, get_settings(redis_url=valkey.url))
    client.close()


def running_task(live: LiveStore) -> str:
    task_id = f"resend-{uuid.uuid4().hex[:10]}"
    live.redis.hset(keys.task_key(task_id), mapping={
        "state": "running", "attempt_token": TOKEN, "tenant": "t", "agent_id": "main",
    })  # fmt: skip
    return task_id


def progress_deltas(live: LiveStore, task_id: str) -> list[str]:
    entries = live.redis.xrange(keys.events_key(task_id))
    events = [json.loads(fields[b"e"]) for _, fields in entries]
    return [e["data"]["delta"] for e in events if e["type"] == "progress"]


def partial(live: LiveStore, task_id: str) -> str:
    return (live.redis.get(keys.partial_key(task_id)) or b"").decode()


def test_a_delta_sent_again_appends_only_what_had_not_landed(live: LiveStore) -> None:
    task_id = running_task(live)
    calls = live.calls
    first = "héllo "  # two bytes for é: `sent` counts bytes, as Redis does
    assert live.run(calls.progress(task_id, TOKEN, first, 0)) == 1
    # Its answer was lost: the worker sends it again with what came since, still at 0.
    assert live.run(calls.progress(task_id, TOKEN, first + "wörld", 0)) == 2
    # And the same once more, all of it landed by now: nothing appended, no event.
    assert live.run(calls.progress(task_id, TOKEN, first + "wörld", 0)) == 0
    sent = len((first + "wörld").encode())
    assert live.run(calls.progress(task_id, TOKEN, "!", sent)) == 3
    assert partial(live, task_id) == "héllo wörld!"
    assert progress_deltas(live, task_id) == ["héllo ", "wörld", "!"]
    assert live.run(calls.progress(task_id, "another attempt", "x", 0)) == -1


def test_the_emitter_keeps_its_text_while_redis_is_away_and_sends_it_once_back(
    live: LiveStore, valkey: EmbeddedValkey
) -> None:
    task_id = running_task(live)
    lost: list[LeaseLost] = []
    emitter = ProgressEmitter(live, task_id, TOKEN, 0.0, lost.append)
    emitter.add("first ")
    gevent.sleep(0)  # the run waits for V1's next chunk: the due flush goes out
    assert partial(live, task_id) == "first "
    # Redis away: nothing listens on this port.
    away = redis.Redis(port=free_port(), socket_timeout=0.5, socket_connect_timeout=0.5,
                       retry=Retry(NoBackoff(), 0))  # fmt: skip
    emitter.live = LiveStore(away, get_settings(redis_url=valkey.url))
    emitter.add("second ")
    gevent.sleep(0)  # its flush finds Redis away: would have raised into the V1 read loop
    emitter.add("third")  # a retry is pending: buffered, not another wait on Redis
    emitter.flush()
    assert partial(live, task_id) == "first "
    emitter.live = live  # back
    emitter.flush()
    emitter.close()
    away.close()
    assert partial(live, task_id) == "first second third"
    assert progress_deltas(live, task_id) == ["first ", "second third"]
    assert lost == []
