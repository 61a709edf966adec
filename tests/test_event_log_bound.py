"""A task whose events outgrow the bounded event log (EVENT_LOG_MAXLEN): a replay or a resume
from before the kept events gets an explicit `truncated` event carrying the output streamed
until then, so the whole output can still be rebuilt; no silent gap."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from tests.event_clients import TERMINAL, sse_events, ws_connect, ws_events
from tests.harness import System, new_system, submit, wait_terminal, wait_until
from v1sim.process import SimulatorProcess

CHUNKS = 500
TEXT = "".join(f"tok{i} " for i in range(CHUNKS))


@pytest.fixture(scope="module")
def bounded(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    """Every delta its own progress event, and a log bound far below their number."""
    workdir: Path = tmp_path_factory.mktemp("bounded")
    overrides = {"EVENT_LOG_MAXLEN": "20", "PROGRESS_INTERVAL": "0"}
    with new_system(valkey, simulator.url, workdir, **overrides) as system:
        system.start_gateway()
        system.start_worker()
        yield system


def rebuilt_output(events: list[dict[str, Any]]) -> str:
    """What a client rebuilds: the truncated event's output, then every later delta."""
    text = ""
    for event in events:
        if event["type"] == "truncated":
            text = event["data"]["output"]
        elif event["type"] == "progress":
            text += event["data"]["delta"]
    return text


def assert_explicit_and_gapless(events: list[dict[str, Any]], after: int) -> None:
    first = events[0]
    assert first["type"] == "truncated", [e["type"] for e in events[:3]]
    assert first["data"]["from_seq"] == after + 1 and first["data"]["to_seq"] == first["seq"]
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(first["seq"], first["seq"] + len(events))), "gap after truncation"
    assert events[-1]["type"] in TERMINAL and sum(e["type"] in TERMINAL for e in events) == 1


def test_replay_and_resume_past_the_log_bound_still_give_the_whole_output(
    bounded: System,
) -> None:
    client = redis.Redis.from_url(bounded.redis_url)
    with bounded.client() as api:
        task = submit(api, f"long output [sim:chunks={CHUNKS}] [sim:chunk_delay=0.004]")
        task_id = task["task_id"]
        log = f"v2:events:{task_id}"

        def trimmed() -> bool:  # the log already dropped its first events
            first = client.xrange(log, "-", "+", count=1)
            return bool(first) and first[0][0] != b"0-1"

        wait_until(trimmed, 20, 0.05, "the running task's log to be trimmed")
        # Mid-run, a replay from the start: explicit truncation, then live to the end.
        live = sse_events(bounded.url, task_id)
        done = wait_terminal(api, task_id)
    kept = client.xlen(log)
    client.close()
    assert done["state"] == "succeeded" and done["result"]["content"] == TEXT
    assert kept < CHUNKS  # the bound held: most events are gone from Redis
    assert_explicit_and_gapless(live, after=0)
    assert rebuilt_output(live) == TEXT
    assert live[-1]["data"]["result"]["content"] == TEXT

    # After the end, a WebSocket resume from seq 5 (long trimmed): the same guarantees.
    with ws_connect(bounded.url) as ws:
        ws.send(json.dumps({"type": "subscribe", "task_id": task_id, "after_seq": 5}))
        resumed = ws_events(ws, until_terminal={task_id})
    assert_explicit_and_gapless(resumed, after=5)
    assert rebuilt_output(resumed) == TEXT
    # Resuming after the truncated event itself is exact: the kept events, nothing more.
    rest = sse_events(bounded.url, task_id, last_event_id=str(resumed[0]["seq"]))
    assert rest == resumed[1:]
