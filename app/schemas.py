"""Request and response shapes of the gateway API (kept apart: in, out, list).

The request model refuses, with a named field, what would otherwise break later or cost
much: lone UTF-16 surrogates (not encodable, they broke storage with a 500), non-finite or
boolean numbers, and oversized collections, which are counted before their items are
validated (a list of 300,000 bad items must not become 300,000 errors).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StrictFloat,
    StrictInt,
    StringConstraints,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app.errors import safe_text
from app.submit_fields import SCHEDULE_RULES, IfBusy, UnixTime
from taskrecord.record import TaskRecord
from taskrecord.settings import Settings
from taskrecord.states import TaskState
from taskrecord.store.models import TaskRow
from taskrecord.store.repo import aware, utc

AGENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
AgentId = Annotated[str, StringConstraints(pattern=AGENT_ID_PATTERN)]
SessionId = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:@-]+$")
]
# Printable ASCII (a URL; IDNs in punycode); the policy checks it at submit (app.webhooks).
# "" (no webhook) or an http(s) URL; that it must resolve to a public address (or one in
# WEBHOOK_ALLOWED_HOSTS) is checked at submit and cannot be said in JSON Schema.
WebhookUrl = Annotated[
    str, StringConstraints(max_length=2048, pattern=r"^([hH][tT][tT][pP][sS]?://[!-~]+)?$")
]
MetadataValue = str | int | float | bool | None
METADATA_MAX_KEYS = 32
METADATA_MAX_JSON = 4096
WEEK = 7 * 86_400
_SURROGATE = re.compile("[\ud800-\udfff]")
# A character `str.strip()` keeps (not `\S`: JavaScript's `\s`, which OpenAPI tools use,
# lacks \x1c-\x1f and \x85). The schema's way of saying "not blank".
NOT_BLANK = r"[^\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
TASK_EXAMPLES: list[JsonValue] = [
    {"message": "Summarise yesterday's build failures", "session_id": "conv-42"},
    {
        "messages": [
            {"role": "system", "content": "Answer in one sentence."},
            {"role": "user", "content": "What does the deploy script do?"},
        ],
        "priority": 7,
        "estimated_seconds": 30,
        "metadata": {"ticket": "OPS-1234"},
    },
]


class InputLimits:
    """Limits from the settings that the request model needs while validating. FastAPI
    gives validators no context: `configure_limits` (create_app) sets them per process."""

    max_messages: int = Settings.model_fields["max_messages"].default


def configure_limits(settings: Settings) -> None:
    InputLimits.max_messages = settings.max_messages


def _no_surrogates(value: str) -> str:
    if not value.isascii() and _SURROGATE.search(value):
        raise PydanticCustomError(
            "lone_surrogate",
            "contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is not valid Unicode",
        )
    return value


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("finite_number", "must be a finite number, not NaN or Infinity")
    return value


def _refuse_unknown_keys(data: Any, model: type[BaseModel]) -> None:
    """One error naming the unknown fields (pydantic would raise one per field)."""
    if isinstance(data, dict):
        unknown = [str(k) for k in data if k not in model.model_fields]
        if unknown:
            names = ", ".join(safe_text(k, 40) for k in unknown[:5])
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            raise PydanticCustomError(
                "extra_forbidden", "unknown field(s): {names}", {"names": names + more}
            )


def _integral(value: Any) -> Any:
    """2.0 is the integer 2 in JSON (and JSON Schema); 2.5, true and "2" stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Finite = BeforeValidator(_finite)
Integral = BeforeValidator(_integral)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(json_schema_extra={"pattern": NOT_BLANK})  # as `_content` checks

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        _refuse_unknown_keys(data, cls)
        return data

    @field_validator("content")
    @classmethod
    def _content(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("empty_content", "is empty")
        return _no_surrogates(value)


class TaskCreate(BaseModel):
    """POST /v1/tasks body: `message` (text) or `messages` (chat history), not both."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": TASK_EXAMPLES, "allOf": SCHEDULE_RULES}
    )

    message: str | None = Field(None, description="The user's message.")
    messages: list[ChatMessage] | None = Field(
        None, description="A whole chat to continue (at most MAX_MESSAGES entries)."
    )
    agent_id: AgentId | None = Field(None, description="V1 agent; default from settings.")
    session_id: SessionId | None = Field(
        None, description="Conversation id; tasks of one session run one at a time, in order."
    )
    priority: Annotated[StrictInt, Finite, Integral] = Field(
        5,
        ge=0,
        le=10,
        description="0-10, at most the tenant's maximum (TENANT_MAX_PRIORITY, 10 for "
        "PRIORITY_TENANTS); above PRIORITY_THRESHOLD (8) uses the priority queue.",
    )
    # Bounds inside Annotated, before `Finite`: elsewhere pydantic still checks them but
    # writes raw `gt`/`le` keys into the JSON schema, which OpenAPI tools ignore.
    estimated_seconds: Annotated[StrictFloat, Field(gt=0, le=WEEK), Finite] | None = Field(
        None, description="Your guess of the run time; picks the queue."
    )
    timeout_seconds: Annotated[StrictInt, Field(ge=1, le=WEEK), Finite, Integral] | None = Field(
        None, description="Run-time limit if below the tier's limit."
    )
    metadata: dict[str, MetadataValue] | None = Field(
        None,
        description=f"At most {METADATA_MAX_KEYS} keys, {METADATA_MAX_JSON} bytes of JSON.",
        json_schema_extra={"maxProperties": METADATA_MAX_KEYS},
    )
    webhook_url: WebhookUrl | None = Field(
        None,
        description="http(s) URL that gets a signed POST (Standard Webhooks) when the task "
        "ends; public addresses only. Unset: the tenant's default; empty: none.",
    )
    if_busy: IfBusy | None = Field(
        None,
        description="Needs session_id. When the conversation already has live tasks: "
        "`enqueue` (default) runs this one after them; `reject` answers 409 "
        "`conversation_busy` naming the task; `interrupt` cancels them (the running one "
        "keeps its partial output) and runs this one next; `replace_queued` cancels those "
        "not yet started and keeps the running one. Runs scheduled for later do not count.",
    )
    run_at: UnixTime | None = Field(
        None,
        description="Run no earlier than this: ISO 8601 with a time zone, or unix seconds; "
        "at most ABSOLUTE_TIME_LIMIT ahead, not in the past. The task waits `queued`.",
    )
    delay_seconds: Annotated[StrictFloat, Field(ge=0), Finite] | None = Field(
        None, description="Run no earlier than this many seconds from now (not with run_at)."
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        _refuse_unknown_keys(data, cls)
        return data

    @field_validator("messages", mode="wrap")
    @classmethod
    def _count_messages(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if isinstance(value, list) and len(value) > InputLimits.max_messages:
            raise PydanticCustomError(
                "too_many_messages",
                "has {count} entries; the limit is {limit} (MAX_MESSAGES)",
                {"count": len(value), "limit": InputLimits.max_messages},
            )
        return handler(value)

    @field_validator("metadata", mode="wrap")
    @classmethod
    def _check_metadata(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        if isinstance(value, dict) and len(value) > METADATA_MAX_KEYS:
            raise PydanticCustomError(
                "too_long", "has {count} keys; the limit is {limit}",
                {"count": len(value), "limit": METADATA_MAX_KEYS},
            )  # fmt: skip
        checked: dict[str, MetadataValue] | None = handler(value)
        for key, item in (checked or {}).items():
            where = "key"
            try:
                _no_surrogates(key)
                where = "value of"
                _finite(_no_surrogates(item) if isinstance(item, str) else item)
            except PydanticCustomError as exc:
                raise PydanticCustomError(
                    exc.type,
                    "{where} '{key}' {problem}",
                    {"where": where, "key": safe_text(key, 40), "problem": exc.message()},
                ) from None
        if checked and len(json.dumps(checked)) > METADATA_MAX_JSON:
            raise ValueError(f"larger than {METADATA_MAX_JSON} bytes of JSON")
        return checked

    @field_validator("message")
    @classmethod
    def _message(cls, value: str | None) -> str | None:
        return None if value is None else _no_surrogates(value)

    @model_validator(mode="after")
    def _one_message_form(self) -> TaskCreate:
        if (self.message is None) == (self.messages is None):
            raise ValueError("give exactly one of `message` or `messages`")
        if self.message is not None and not self.message.strip():
            raise ValueError("message is empty")
        if self.messages is not None and not any(m.role == "user" for m in self.messages):
            raise ValueError("messages has no non-empty user message")
        if self.if_busy is not None and self.session_id is None:
            raise ValueError("if_busy: needs session_id (it applies to a conversation)")
        if self.run_at is not None and self.delay_seconds is not None:
            raise ValueError("give at most one of `run_at` or `delay_seconds`")
        scheduled = self.run_at is not None or self.delay_seconds is not None
        if scheduled and self.if_busy not in (None, "enqueue"):
            # The policy acts when the task is submitted, not when it comes due.
            raise ValueError(f"if_busy: {self.if_busy} cannot be combined with run_at or "
                             "delay_seconds (a scheduled task is enqueued)")  # fmt: skip
        return self

    def chat(self) -> list[dict[str, str]]:
        if self.messages is not None:
            return [m.model_dump() for m in self.messages]
        return [{"role": "user", "content": self.message or ""}]

    def text_chars(self) -> int:
        return sum(len(m["content"]) for m in self.chat())


class TaskResult(BaseModel):
    content: str
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None


class TaskError(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    message: str


# States whose answer shows the partial output: the ended-early ones, and from the live
# record also `running` (output so far); the SQL row's partial is read only once ended.
ENDED_PARTIAL_STATES = frozenset({TaskState.CANCELLED, TaskState.TIMED_OUT, TaskState.FAILED})
LIVE_PARTIAL_STATES = ENDED_PARTIAL_STATES | {TaskState.RUNNING}


class TaskOut(BaseModel):
    task_id: str
    state: TaskState
    queue: str
    priority: int
    estimated_seconds: float
    estimate_source: str
    agent_id: str
    session_id: str | None
    attempts: int
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: TaskResult | None = None
    error: TaskError | None = None
    partial: str | None = None
    cancel_requested: bool = False
    metadata: dict[str, MetadataValue] | None = None
    scheduled_for: datetime | None = None

    @classmethod
    def from_live(cls, fields: Mapping[str, str], partial: str | None) -> TaskOut:
        """From the task's Redis hash (`BadTaskRecord` if it cannot be read)."""
        return cls.from_record(TaskRecord.from_hash(fields), partial)

    @classmethod
    def from_record(cls, r: TaskRecord, partial: str | None) -> TaskOut:
        state = r.state
        succeeded = state is TaskState.SUCCEEDED
        return cls(
            task_id=r.id,
            state=state,
            queue=r.queue,
            priority=r.priority,
            estimated_seconds=r.estimated_seconds,
            estimate_source=r.estimate_source,
            agent_id=r.agent_id,
            session_id=r.session_id,
            attempts=r.attempts,
            created_at=utc(r.created_at),  # type: ignore[arg-type]
            started_at=utc(r.started_at),
            finished_at=utc(r.finished_at),
            result=r.result if succeeded else None,  # type: ignore[arg-type]
            error=(r.error or None) if not succeeded else None,  # type: ignore[arg-type]
            partial=partial if state in LIVE_PARTIAL_STATES else None,
            cancel_requested=r.cancel_requested,
            metadata=r.metadata,
            scheduled_for=utc(r.scheduled_for),
        )

    @classmethod
    def from_row(cls, row: TaskRow) -> TaskOut:
        created = aware(row.created_at)
        assert created is not None
        succeeded = row.state == TaskState.SUCCEEDED
        return cls(
            task_id=row.id,
            state=TaskState(row.state),
            queue=row.queue,
            priority=row.priority,
            estimated_seconds=row.estimated_seconds,
            estimate_source=row.estimate_source,
            agent_id=row.agent_id,
            session_id=row.session_id,
            attempts=row.attempts,
            created_at=created,
            started_at=aware(row.started_at),
            finished_at=aware(row.finished_at),
            result=row.result if succeeded else None,  # type: ignore[arg-type]
            error=row.error if not succeeded else None,  # type: ignore[arg-type]
            partial=row.partial if row.state in ENDED_PARTIAL_STATES else None,
            metadata=row.metadata_,  # type: ignore[arg-type]
        )


class TaskList(BaseModel):
    tasks: list[TaskOut]
    next_cursor: str | None


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
