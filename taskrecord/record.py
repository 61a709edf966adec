"""One task's live record, typed: `TaskRecord.from_hash` reads the task's Redis hash,
`to_hash` writes it back with the field names and string encodings the Lua scripts
(`lua/*.lua`) and records already in Redis use.

Encodings: numbers as `str()` (priority, attempts, dispatch, estimated_seconds, weight,
max_running, retry_base), times as unix seconds with six decimals (the scripts' `fmt`),
JSON as compact text (`live.dumps`), flags as '1' or no field, "none" as '' for the fields
every new task has (session_id, timeout_seconds, metadata, webhook_url) and as no field
for the rest. Fields the scripts keep for themselves (lease, attempt token, parking, event
seq, ...) and any this module does not know stay in `extra`, verbatim, so a record read
and written again is the same hash.

A named tuple, no validation library: a submit builds one and the gateway parses one
per task read, so it must cost microseconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

from taskrecord.live import dumps
from taskrecord.states import TaskState

JsonObject = dict[str, Any]

_STATES = {state.value: state for state in TaskState}
_NO_EXTRA: Mapping[str, str] = MappingProxyType({})

# Fields the scripts and the worker keep for their own bookkeeping, carried in `extra`
# as they are (tests/unit/test_task_record.py checks that each field the scripts touch is
# typed below or listed here).
BOOKKEEPING_FIELDS = frozenset(
    {
        "worker", "attempt_token", "lease_until", "answered", "output_started", "parked",
        "queue_head", "seq", "held_until", "v1_accepted",
    }
)  # fmt: skip


class BadTaskRecord(ValueError):
    """A task hash this code cannot read (a field missing, or not in its encoding)."""


class TaskRecord(NamedTuple):
    """Immutable (a named tuple: a quarter of a frozen dataclass's cost to build); change a
    copy with `_replace`."""

    # Written by CREATE for every task (`new_task.task_fields`, `mirror.record_from_row`).
    id: str
    state: TaskState
    tenant: str = ""
    queue: str = "short"
    tier: str = ""  # short | long; '' unknown
    priority: int = 5
    estimated_seconds: float = 0.0
    estimate_source: str = "heuristic"
    agent_id: str = "main"
    session_id: str | None = None  # its conversation, if any
    created_at: float = 0.0
    attempts: int = 0  # claims so far
    dispatch: int = 0  # the current message's number; an older message is stale
    timeout_seconds: int | None = None
    # The request as stored (JSON text): the bulk of the record, read only by the worker,
    # so it is parsed on demand (`request_body`), not on every read of the record.
    request: str = ""
    metadata: JsonObject | None = None
    webhook_url: str = ""  # '' none; its end owes a webhook otherwise
    # The scheduler's view of the tenant (None: the scripts' defaults; a record rebuilt
    # from SQL has none).
    weight: float | None = None
    line: str | None = None
    max_running: int | None = None
    # Written later, by the scripts, the gateway or the worker.
    scheduled_for: float | None = None  # a task submitted for later: when it is due
    started_at: float | None = None  # its first claim
    attempt_started_at: float | None = None  # this attempt's claim
    finished_at: float | None = None
    result: JsonObject | None = None
    error: JsonObject | None = None  # how it ended, or why the last attempt failed
    retry_base: int | None = None  # `attempts` when it was last retried by hand
    cancel_requested: bool = False
    cancel_reason: str | None = None
    promoted: bool = False  # moved to the long tier while running
    extra: Mapping[str, str] = _NO_EXTRA  # fields not named above, verbatim

    @classmethod
    def from_hash(cls, h: Mapping[str, str]) -> TaskRecord:
        """From the task's hash (str keys and values, as `live.pairs` gives). A missing
        creation field takes its default; a missing id or state, an unknown state or a
        value not in its encoding raises `BadTaskRecord`."""
        try:
            task_id, raw_state = h["id"], h["state"]
        except KeyError as exc:
            raise BadTaskRecord(f"task record has no {exc.args[0]!r} field") from None
        state = _STATES.get(raw_state)
        if state is None:
            known = ", ".join(_STATES)
            raise BadTaskRecord(f"task {task_id}: unknown state {raw_state!r} (one of {known})")
        get = h.get
        unknown = h.keys() - _KNOWN
        try:
            # Inline (every task read parses one): '' reads as absent, as it always has.
            return cls(
                id=task_id,
                state=state,
                tenant=get("tenant", ""),
                queue=get("queue", "short"),
                tier=get("tier", ""),
                priority=int(get("priority") or 5),
                estimated_seconds=float(get("estimated_seconds") or 0.0),
                estimate_source=get("estimate_source", "heuristic"),
                agent_id=get("agent_id", "main"),
                session_id=get("session_id") or None,
                created_at=float(get("created_at") or 0.0),
                attempts=int(get("attempts") or 0),
                dispatch=int(get("dispatch") or 0),
                timeout_seconds=_whole(get("timeout_seconds")),
                request=get("request", ""),
                metadata=_object(get("metadata")),
                webhook_url=get("webhook_url", ""),
                weight=_float(get("weight")),
                line=get("line"),
                max_running=_int(get("max_running")),
                scheduled_for=_float(get("scheduled_for")),
                started_at=_float(get("started_at")),
                attempt_started_at=_float(get("attempt_started_at")),
                finished_at=_float(get("finished_at")),
                result=_object(get("result")),
                error=_object(get("error")),
                retry_base=_int(get("retry_base")),
                cancel_requested=get("cancel_requested") == "1",
                cancel_reason=get("cancel_reason"),
                promoted=get("promoted") == "1",
                extra={name: h[name] for name in unknown} if unknown else _NO_EXTRA,
            )
        except ValueError as exc:
            raise BadTaskRecord(f"task {task_id}: {_culprit(h)}: {exc}") from None

    def to_hash(self) -> dict[str, str]:
        """The hash fields, encoded as the scripts and every reader expect."""
        h = {
            "id": self.id,
            "tenant": self.tenant,
            "state": self.state.value,
            "queue": self.queue,
            "tier": self.tier,
            "priority": str(self.priority),
            "estimated_seconds": str(self.estimated_seconds),
            "estimate_source": self.estimate_source,
            "agent_id": self.agent_id,
            "session_id": self.session_id or "",
            "created_at": f"{self.created_at:.6f}",  # the scripts' fmt()
            "attempts": str(self.attempts),
            "dispatch": str(self.dispatch),
        }
        if self.weight is not None:
            h["weight"] = str(self.weight)
        if self.line is not None:
            h["line"] = self.line
        if self.max_running is not None:
            h["max_running"] = str(self.max_running)
        h["timeout_seconds"] = str(self.timeout_seconds or "")
        h["request"] = self.request
        h["metadata"] = dumps(self.metadata) if self.metadata else ""
        h["webhook_url"] = self.webhook_url
        if self.scheduled_for is not None:
            h["scheduled_for"] = f"{self.scheduled_for:.6f}"
        if self.started_at is not None:
            h["started_at"] = f"{self.started_at:.6f}"
        if self.attempt_started_at is not None:
            h["attempt_started_at"] = f"{self.attempt_started_at:.6f}"
        if self.finished_at is not None:
            h["finished_at"] = f"{self.finished_at:.6f}"
        if self.result is not None:
            h["result"] = dumps(self.result)
        if self.error is not None:
            h["error"] = dumps(self.error)
        if self.retry_base is not None:
            h["retry_base"] = str(self.retry_base)
        if self.cancel_requested:
            h["cancel_requested"] = "1"
        if self.cancel_reason is not None:
            h["cancel_reason"] = self.cancel_reason
        if self.promoted:
            h["promoted"] = "1"
        if self.extra:
            h.update(self.extra)
        return h

    def request_body(self) -> JsonObject:
        """The request as submitted: `{"messages": [...]}`."""
        body = json.loads(self.request) if self.request else {}
        return body if isinstance(body, dict) else {}

    @property
    def attempts_since_retry(self) -> int:
        """Claims since the last manual retry (which starts a fresh round of retries)."""
        return self.attempts - (self.retry_base or 0)


def _int(text: str | None) -> int | None:
    return int(text) if text else None


def _float(text: str | None) -> float | None:
    return float(text) if text else None


def _whole(text: str | None) -> int | None:
    return int(float(text)) if text else None  # as the SQL mirror has always read it


def _object(text: str | None) -> JsonObject | None:
    if not text:
        return None
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


_PARSERS: dict[str, Callable[[str | None], object]] = {
    "priority": _int, "estimated_seconds": _float, "created_at": _float, "attempts": _int,
    "dispatch": _int, "timeout_seconds": _whole, "metadata": _object, "weight": _float,
    "max_running": _int, "scheduled_for": _float, "started_at": _float,
    "attempt_started_at": _float, "finished_at": _float, "result": _object,
    "error": _object, "retry_base": _int,
}  # fmt: skip


def _culprit(h: Mapping[str, str]) -> str:
    """Which field of `h` is not in its encoding (the error path only)."""
    for name, parse in _PARSERS.items():
        try:
            parse(h.get(name))
        except ValueError:
            return f"field {name!r}"
    return "a field"


_KNOWN = frozenset(TaskRecord._fields) - {"extra"}
