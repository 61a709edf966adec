"""The typed task record reads and writes the task's Redis hash exactly as the Lua
scripts and the records already in Redis have it (no server needed)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import get_args

import pytest

from app.api.dead_letters import BulkRetryRequest
from app.schemas import TaskOut
from taskrecord.dead_letters import RETRYABLE_STATES
from taskrecord.estimator import Estimate
from taskrecord.live import dumps
from taskrecord.mirror import record_from_row, row_from_record
from taskrecord.new_task import TaskSpec, task_fields
from taskrecord.record import BOOKKEEPING_FIELDS, BadTaskRecord, TaskRecord
from taskrecord.settings import get_settings
from taskrecord.states import TaskState
from taskrecord.tenants import TenantPolicies

TASK_ID = "6f0c0000-0000-4000-8000-000000000001"


def new_task_hash() -> dict[str, str]:
    settings = get_settings()
    spec = TaskSpec(
        messages=[{"role": "user", "content": "Résumé the build log"}],
        agent_id="main",
        session_id="conv-42",
        priority=7,
        estimated_seconds=None,
        timeout_seconds=600,
        metadata={"ticket": "OPS-1", "n": 2},
        webhook_url="https://hooks.example.com/x",
    )
    policy = TenantPolicies(settings)("acme")
    return task_fields(settings, policy, spec, TASK_ID, Estimate(12.5, "heuristic"), 1.7e9 + 0.25)


def test_a_new_task_hash_keeps_its_field_names_and_encodings() -> None:
    assert new_task_hash() == {
        "id": TASK_ID,
        "tenant": "acme",
        "state": "queued",
        "queue": "short",
        "tier": "short",
        "priority": "7",
        "estimated_seconds": "12.5",
        "estimate_source": "heuristic",
        "agent_id": "main",
        "session_id": "conv-42",
        "created_at": "1700000000.250000",
        "attempts": "0",
        "dispatch": "1",
        "weight": "1.0",
        "line": "acme",
        "max_running": "0",
        "timeout_seconds": "600",
        "request": '{"messages":[{"role":"user","content":"Résumé the build log"}]}',
        "metadata": '{"ticket":"OPS-1","n":2}',
        "webhook_url": "https://hooks.example.com/x",
    }


def ended_task_hash() -> dict[str, str]:
    """A new task after claim.lua, progress.lua and finalize.lua (succeeded)."""
    return {
        **new_task_hash(),
        "state": "succeeded",
        "attempts": "2",
        "dispatch": "3",
        "retry_base": "1",
        "worker": "celery@w1",
        "attempt_token": "9b1f",
        "lease_until": "0",
        "answered": "1",
        "output_started": "1",
        "parked": "",
        "queue_head": "",
        "seq": "6",
        "started_at": "1700000001.500000",
        "attempt_started_at": "1700000002.000000",
        "finished_at": "1700000003.125000",
        "scheduled_for": "1700000000.500000",
        "result": dumps({"content": "Done: ✓", "usage": None, "finish_reason": "stop"}),
        "error": dumps({"type": "v1_timeout", "message": "V1 did not answer"}),
        "cancel_requested": "1",
        "cancel_reason": "interrupted by task x",
        "promoted": "1",
        "v1_accepted": "1",
        "some_future_field": "kept",
    }


@pytest.mark.parametrize("make", [new_task_hash, ended_task_hash])
def test_hash_to_record_to_hash_is_the_same_hash(make: Callable[[], dict[str, str]]) -> None:
    h = make()
    assert TaskRecord.from_hash(h).to_hash() == h


def test_the_record_types_every_field_it_reads() -> None:
    r = TaskRecord.from_hash(ended_task_hash())
    assert r.state is TaskState.SUCCEEDED and r.state.is_terminal
    assert (r.priority, r.attempts, r.dispatch, r.retry_base) == (7, 2, 3, 1)
    assert r.attempts_since_retry == 1
    assert (r.created_at, r.started_at, r.finished_at) == (1.7e9 + 0.25, 1.7e9 + 1.5, 1.7e9 + 3.125)
    assert r.timeout_seconds == 600 and r.estimated_seconds == 12.5 and r.weight == 1.0
    assert r.session_id == "conv-42" and r.cancel_requested and r.promoted
    assert r.result == {"content": "Done: ✓", "usage": None, "finish_reason": "stop"}
    assert r.error == {"type": "v1_timeout", "message": "V1 did not answer"}
    assert r.metadata == {"ticket": "OPS-1", "n": 2}
    assert r.request_body() == {"messages": [{"role": "user", "content": "Résumé the build log"}]}
    assert r.extra["lease_until"] == "0" and r.extra["some_future_field"] == "kept"


def test_missing_optional_fields_are_none_and_stay_absent() -> None:
    h = {"id": TASK_ID, "state": "queued", "session_id": "", "timeout_seconds": "",
         "metadata": ""}  # fmt: skip
    r = TaskRecord.from_hash(h)
    assert r.session_id is None and r.timeout_seconds is None and r.metadata is None
    absent = (r.started_at, r.finished_at, r.scheduled_for, r.retry_base, r.result, r.error,
              r.weight, r.line, r.max_running, r.cancel_reason)  # fmt: skip
    assert absent == (None,) * len(absent)
    assert not r.cancel_requested and r.extra == {}
    assert (r.priority, r.queue, r.agent_id, r.estimate_source) == (5, "short", "main", "heuristic")
    out = r.to_hash()
    for name in ("started_at", "finished_at", "result", "error", "retry_base", "weight", "line",
                 "max_running", "cancel_requested", "scheduled_for"):  # fmt: skip
        assert name not in out
    assert (out["session_id"], out["timeout_seconds"], out["metadata"]) == ("", "", "")


def test_an_unknown_state_is_refused_naming_it_and_the_known_ones() -> None:
    with pytest.raises(BadTaskRecord, match=r"unknown state 'frozen' \(one of queued, paused"):
        TaskRecord.from_hash({"id": TASK_ID, "state": "frozen"})
    with pytest.raises(BadTaskRecord, match="no 'state' field"):
        TaskRecord.from_hash({"id": TASK_ID})
    with pytest.raises(BadTaskRecord, match="field 'priority'"):
        TaskRecord.from_hash({"id": TASK_ID, "state": "queued", "priority": "high"})
    with pytest.raises(BadTaskRecord, match="field 'result': expected a JSON object"):
        TaskRecord.from_hash({"id": TASK_ID, "state": "succeeded", "result": "[1]"})


def test_an_error_written_by_cjson_reads_as_the_same_object() -> None:
    # finalize.lua encodes a requested cancel's error with cjson, which escapes '/'.
    h = {"id": TASK_ID, "state": "cancelled",
         "error": '{"message":"replaced by task a\\/b","type":"cancelled"}'}  # fmt: skip
    assert TaskRecord.from_hash(h).error == {"message": "replaced by task a/b", "type": "cancelled"}


def test_the_sql_row_and_a_record_rebuilt_from_it_agree() -> None:
    record = TaskRecord.from_hash(ended_task_hash())
    row = row_from_record(record, "partial text")
    assert (row.state, row.priority, row.attempts, row.timeout_seconds) == ("succeeded", 7, 2, 600)
    assert row.started_at == datetime.fromtimestamp(1.7e9 + 1.5, UTC)
    assert row.result == record.result and row.partial == "partial text"
    assert row.request == record.request_body() and row.metadata_ == record.metadata
    rebuilt = record_from_row(row, "short").to_hash()
    assert rebuilt["state"] == "queued" and rebuilt["retry_base"] == "2"
    assert rebuilt["dispatch"] == "3" and rebuilt["created_at"] == "1700000000.250000"
    assert json.loads(rebuilt["request"]) == record.request_body()
    for name in ("weight", "line", "max_running", "result", "error", "finished_at"):
        assert name not in rebuilt  # the scripts' defaults, and no trace of the last end


def test_the_api_answer_carries_the_typed_state() -> None:
    out = TaskOut.from_live(ended_task_hash(), "partial")
    assert out.state is TaskState.SUCCEEDED and out.partial is None and out.error is None
    assert json.loads(out.model_dump_json())["state"] == "succeeded"
    assert out.result is not None and out.result.content == "Done: ✓"


def test_the_bulk_retry_states_are_the_retryable_ones() -> None:
    assert set(get_args(BulkRetryRequest.model_fields["state"].annotation)) == set(RETRYABLE_STATES)


def _script_task_fields() -> set[str]:
    """Every field a transition script names on a task's hash (HSET/HGET/HMGET/HDEL/HINCRBY
    on TK, tk or a task key), by scanning each call to its closing parenthesis."""
    found: set[str] = set()
    for path in (Path(__file__).parents[2] / "taskrecord" / "lua").glob("*.lua"):
        source = path.read_text()
        for match in re.finditer(r"redis\.call\(", source):
            depth, i = 1, match.end()
            while depth:
                depth += {"(": 1, ")": -1}.get(source[i], 0)
                i += 1
            args = [a.strip() for a in _split_top(source[match.end() : i - 1])]
            command = args[0].strip("'")
            if command not in {"HSET", "HGET", "HMGET", "HDEL", "HINCRBY"}:
                continue
            if args[1] not in {"TK", "tk"} and "'task:'" not in args[1]:
                continue
            names = (
                args[2::2] if command == "HSET" else args[2:3] if command == "HINCRBY" else args[2:]
            )
            found.update(n.strip("'") for n in names if re.fullmatch(r"'[a-z_]+'", n))
    return found


def _split_top(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1, "{": 1, "}": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def test_every_field_the_scripts_touch_is_typed_or_kept_as_bookkeeping() -> None:
    fields = _script_task_fields()
    assert {"state", "attempts", "dispatch", "lease_until", "attempt_started_at"} <= fields
    typed = set(TaskRecord._fields) - {"extra"}
    assert fields - typed - BOOKKEEPING_FIELDS == set()
