"""The embedded Valkey's settings hold what the product needs: every task has an event
stream, and Valkey allocates a new stream's first node at `stream-node-max-bytes` (4096 by
default). With the default a queued task's one `queued` event cost 4.3 KB, more than its
hash, its Celery message and its index entries together (issue 13: memory, AOF size and
AOF rewrites of a busy system); at 1024 it costs 1.3 KB and a long stream is no larger."""

from __future__ import annotations

import uuid

import redis

from deploy.embedded_valkey import STREAM_NODE_MAX_BYTES, EmbeddedValkey
from taskrecord import keys
from testbed import System
from tests.harness import submit, wait_terminal

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


def test_a_finished_tasks_event_log_costs_little_beyond_its_events(system: System) -> None:
    with system.client() as api:
        task = submit(api, "stream memory [sim:chunks=25] [sim:chunk_delay=0.12]")
        assert wait_terminal(api, task["task_id"])["state"] == "succeeded"
    client = redis.Redis.from_url(system.redis_url)
    try:
        stream = keys.events_key(task["task_id"])
        events = client.xrange(stream)
        payload = sum(len(fields[b"e"]) for _, fields in events)
        used = client.memory_usage(stream, samples=0)
    finally:
        client.close()
    assert len(events) >= 20  # queued, started, progress (one per 0.1 s at most), end
    assert used is not None and used <= 1.3 * payload + 1024, (used, payload, len(events))
