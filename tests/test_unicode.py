"""Non-ASCII text end to end: emoji (with skin tones, joiners, flags), CJK, right-to-left
scripts, combining marks, characters outside the BMP, and JSON's special characters, in
the message, the metadata, V1's streamed output (split mid-character on the wire), the
events over SSE and WebSocket, the Redis record, the SQL store, and a cancelled task's
partial output."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from tests.event_clients import sse_events, ws_connect, ws_events
from tests.harness import System, new_system, submit, wait_terminal, wait_until
from tests.unicode_v1 import DELTAS, OUTPUT, SLOW_MARKER, UnicodeV1

MESSAGE = 'Ünïcödé 👋🏾 — 日本語 · عربى · עברית · ﷽ · 🏳️‍🌈 · 𝄞 "q" \\ \u2028 end'
METADATA = {"note": "🎉 ünïcode ✓", "日本": "語"}


@pytest.fixture(scope="module")
def unicode_system(
    valkey: EmbeddedValkey, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[System, UnicodeV1]]:
    with UnicodeV1() as v1, new_system(valkey, v1.url, tmp_path_factory.mktemp("uni")) as system:
        system.start_gateway()
        system.start_worker()
        yield system, v1


def test_unicode_survives_every_hop(unicode_system: tuple[System, UnicodeV1]) -> None:
    system, v1 = unicode_system
    with system.client() as api:
        task = submit(api, MESSAGE, metadata=METADATA)
        task_id = task["task_id"]
        done = wait_terminal(api, task_id)
        assert done["state"] == "succeeded", done["error"]
        sse = sse_events(system.url, task_id)
        with ws_connect(system.url) as ws:
            ws.send(json.dumps({"type": "subscribe", "task_id": task_id}))
            over_ws = ws_events(ws, until_terminal={task_id})
        # The Redis cache gone, the same answer from the SQL store.
        client = redis.Redis.from_url(system.redis_url)
        client.delete(*client.scan_iter(match=f"*{task_id}*"))
        client.close()
        from_sql = api.get(f"/v1/tasks/{task_id}").json()
    assert v1.received[-1]["messages"][-1] == {"role": "user", "content": MESSAGE}
    assert done["result"]["content"] == OUTPUT and done["metadata"] == METADATA
    for events in (sse, over_ws):
        text = "".join(e["data"]["delta"] for e in events if e["type"] == "progress")
        assert text == OUTPUT
        assert events[-1]["data"]["result"]["content"] == OUTPUT
    assert from_sql == done


def test_unicode_partial_output_of_a_cancelled_task_is_kept_exactly(
    unicode_system: tuple[System, UnicodeV1],
) -> None:
    system, _v1 = unicode_system
    with system.client() as api:
        task_id = submit(api, f"{MESSAGE} {SLOW_MARKER}")["task_id"]
        # Wait for the first three deltas (emoji included), then cancel mid-stream.
        wait_until(lambda: len(api.get(f"/v1/tasks/{task_id}").json()["partial"] or "")
                   >= len("".join(DELTAS[:3])), 15, 0.05, "some output")  # fmt: skip
        assert api.post(f"/v1/tasks/{task_id}/cancel").status_code == 202
        done = wait_terminal(api, task_id)
        final = sse_events(system.url, task_id)[-1]
    assert done["state"] == "cancelled"
    partial = done["partial"]
    assert len(partial) >= len("".join(DELTAS[:3])) and OUTPUT.startswith(partial)
    assert partial != OUTPUT  # cut before the end
    assert final["type"] == "cancelled" and final["data"]["partial"] == partial
