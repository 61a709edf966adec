"""The embedded Valkey's settings hold what the product needs: every task has an event
stream, and Valkey allocates a new stream's first node at `stream-node-max-bytes` (4096 by
default). With the default a queued task's one `queued` event cost 4.3 KB, more than its
hash, its Celery message and its index entries together (issue 13: memory, and the
dataset each AOF rewrite writes out); at 1024 it costs 1.3 KB and a long stream is no larger."""

from __future__ import annotations

import uuid
from pathlib import Path

import redis

from deploy.embedded_valkey import STREAM_NODE_MAX_BYTES, EmbeddedValkey

# A `queued` event as the scripts write it (taskrecord/lua/prelude.lua: emit_for).
QUEUED = (
    '{"type":"queued","task_id":"6bfc5993-c771-4ca2-95a4-87108ddd00fb","seq":1,'
    '"ts":1795931563.003714,"data":{"queue":"short","priority":5,"position":12}}'
)


def test_the_embedded_valkey_runs_with_small_stream_nodes(valkey: EmbeddedValkey) -> None:
    client = redis.Redis.from_url(valkey.url)
    try:
        config = client.config_get("stream-node-max-bytes")
        assert int(config["stream-node-max-bytes"]) == STREAM_NODE_MAX_BYTES == 1024
        stream = f"settings-test:{uuid.uuid4().hex}"
        client.xadd(stream, {"e": QUEUED}, id="0-1")
        used = client.memory_usage(stream, samples=0)
        client.delete(stream)
    finally:
        client.close()
    # The default's 4 KB first node would make this 4.3 KB.
    assert used is not None and used <= 1536, used


def test_a_long_event_log_is_no_larger_than_with_the_default(tmp_path: Path) -> None:
    """100 progress events: small nodes do not cost a long stream more than the default's
    4 KB ones (20.3 against 20.5 KB when written)."""
    progress = QUEUED.replace('"queued"', '"progress"').replace(
        '{"queue":"short","priority":5,"position":12}', '{"text":"' + "x" * 60 + '"}'
    )
    with EmbeddedValkey(tmp_path / "own-valkey") as own:
        client = redis.Redis.from_url(own.url)
        try:
            used = {}
            for node_bytes in (STREAM_NODE_MAX_BYTES, 4096):
                client.config_set("stream-node-max-bytes", node_bytes)
                stream = f"events-{node_bytes}"
                for seq in range(1, 101):
                    client.xadd(stream, {"e": progress}, id=f"0-{seq}")
                used[node_bytes] = client.memory_usage(stream, samples=0)
        finally:
            client.close()
    assert used[STREAM_NODE_MAX_BYTES] <= used[4096], used
