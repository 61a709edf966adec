"""The last of a run's text goes with its end (issue 13: one Redis call per short task
instead of two), against the suite's real Valkey: a flush that is due waits for the run's
next pause, so text arriving together with the end of V1's stream is carried by the end's
script, which announces it as the same `progress` event before the terminal one."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import gevent
import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord import keys
from taskrecord.live import LiveStore, finalize_result
from taskrecord.settings import get_settings
from tasks.errors import LeaseLost
from tasks.progress import ProgressEmitter

TOKEN = "attempt-token"


@pytest.fixture
def live(valkey: EmbeddedValkey) -> Iterator[LiveStore]:
    client = redis.Redis.from_url(valkey.url)
    yield LiveStore(client, get_settings(redis_url=valkey.url, v1_url="http://at-end"))
    client.close()


def running_task(live: LiveStore) -> str:
    task_id = f"at-end-{uuid.uuid4().hex[:10]}"
    live.redis.hset(keys.task_key(task_id), mapping={
        "id": task_id, "state": "running", "attempt_token": TOKEN, "tenant": "t",
        "agent_id": "main",
    })  # fmt: skip
    live.redis.expire(keys.task_key(task_id), 60)
    return task_id


def events(live: LiveStore, task_id: str) -> list[dict[str, Any]]:
    entries = live.redis.xrange(keys.events_key(task_id))
    return [json.loads(fields[b"e"]) for _, fields in entries]


def deltas(live: LiveStore, task_id: str) -> list[str]:
    return [e["data"]["delta"] for e in events(live, task_id) if e["type"] == "progress"]


def partial(live: LiveStore, task_id: str) -> str:
    return (live.redis.get(keys.partial_key(task_id)) or b"").decode()


def end(live: LiveStore, task_id: str, output: tuple[str, int], token: str = TOKEN) -> int:
    call = live.calls.finalize(task_id, "succeeded", token=token, result={"content": "x"},
                               output=output[0], sent=output[1])  # fmt: skip
    return finalize_result(live.run(call)).code


def emitter(live: LiveStore, task_id: str, lost: list[LeaseLost]) -> ProgressEmitter:
    return ProgressEmitter(live, task_id, TOKEN, 0.1, lost.append)


def test_text_that_comes_with_the_end_of_the_stream_goes_with_the_end(live: LiveStore) -> None:
    task_id, lost = running_task(live), []
    progress = emitter(live, task_id, lost)
    progress.add("héllo ")  # due at once, but only at the run's next pause...
    progress.add("wörld")
    assert deltas(live, task_id) == []  # ...which did not come: V1's stream had ended
    taken = progress.take()
    assert taken == ("héllo wörld", 0)
    assert end(live, task_id, taken) == 1
    gevent.sleep(0.01)  # the flush that was due finds the run ended: sends nothing
    progress.close()
    assert [e["type"] for e in events(live, task_id)] == ["progress", "succeeded"]
    assert deltas(live, task_id) == ["héllo wörld"] and partial(live, task_id) == "héllo wörld"
    assert [e["seq"] for e in events(live, task_id)] == [1, 2] and lost == []


def test_a_due_flush_goes_out_at_the_runs_next_pause_and_the_rest_with_the_end(
    live: LiveStore,
) -> None:
    task_id, lost = running_task(live), []
    progress = emitter(live, task_id, lost)
    progress.add("é")
    gevent.sleep(0)  # the run waits for V1's next chunk: the flush goes out now
    assert deltas(live, task_id) == ["é"]
    progress.add("b")  # within the interval: waits for its timer...
    taken = progress.take()  # ...but the stream ended first
    assert taken == ("b", 2)  # 'é' is two bytes
    assert end(live, task_id, taken) == 1
    progress.close()
    assert deltas(live, task_id) == ["é", "b"] and partial(live, task_id) == "éb"


def test_an_end_sent_again_appends_only_what_had_not_landed(live: LiveStore) -> None:
    """The end's answer lost (Redis away) after its text landed in part: the text is sent
    again with the same count; only the rest is appended (here via progress.lua first)."""
    task_id = running_task(live)
    assert live.run(live.calls.progress(task_id, TOKEN, "abc", 0)) == 1
    assert end(live, task_id, ("abcdef", 0)) == 1
    assert deltas(live, task_id) == ["abc", "def"] and partial(live, task_id) == "abcdef"
    assert end(live, task_id, ("abcdef", 0)) == 0  # already ended: nothing again
    assert partial(live, task_id) == "abcdef"


def test_an_end_of_a_lost_attempt_appends_nothing(live: LiveStore) -> None:
    task_id = running_task(live)
    assert end(live, task_id, ("late text", 0), token="another attempt") == -1
    assert deltas(live, task_id) == [] and partial(live, task_id) == ""
