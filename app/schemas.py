"""Request and response shapes of the gateway API (kept apart: in, out, list)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.store.models import TaskRow
from app.store.repo import aware, utc

AgentId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
SessionId = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:@-]+$")
]
MetadataValue = str | int | float | bool | None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "user", "assistant", "tool"]
    content: str


class TaskCreate(BaseModel):
    """POST /v1/tasks body: `message` (text) or `messages` (chat history), not both."""

    model_config = ConfigDict(extra="forbid")

    message: str | None = Field(None, description="The user's message.")
    messages: list[ChatMessage] | None = Field(None, description="A whole chat to continue.")
    agent_id: AgentId | None = Field(None, description="V1 agent; default from settings.")
    session_id: SessionId | None = Field(
        None, description="Conversation id; tasks of one session run one at a time, in order."
    )
    priority: int = Field(5, ge=0, le=10, description="0-10; above 8 uses the priority queue.")
    estimated_seconds: float | None = Field(
        None, gt=0, le=7 * 86_400, description="Your guess of the run time; picks the queue."
    )
    timeout_seconds: int | None = Field(
        None, ge=1, le=7 * 86_400, description="Run-time limit if below the tier's limit."
    )
    metadata: dict[str, MetadataValue] | None = Field(None, max_length=32)

    @model_validator(mode="after")
    def _one_message_form(self) -> TaskCreate:
        if (self.message is None) == (self.messages is None):
            raise ValueError("give exactly one of `message` or `messages`")
        if self.message is not None and not self.message.strip():
            raise ValueError("message is empty")
        if self.messages is not None and not any(
            m.role == "user" and m.content.strip() for m in self.messages
        ):
            raise ValueError("messages has no non-empty user message")
        if self.metadata and len(json.dumps(self.metadata)) > 4096:
            raise ValueError("metadata is larger than 4096 bytes of JSON")
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


class TaskOut(BaseModel):
    task_id: str
    state: str
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

    @classmethod
    def from_live(cls, f: dict[str, str], partial: str | None) -> TaskOut:
        def when(name: str) -> datetime | None:
            return utc(float(f[name])) if f.get(name) else None

        state = f["state"]
        return cls(
            task_id=f["id"],
            state=state,
            queue=f["queue"],
            priority=int(f["priority"]),
            estimated_seconds=float(f["estimated_seconds"]),
            estimate_source=f.get("estimate_source", "heuristic"),
            agent_id=f["agent_id"],
            session_id=f.get("session_id") or None,
            attempts=int(f.get("attempts") or 0),
            created_at=when("created_at") or utc(0.0),  # type: ignore[arg-type]
            started_at=when("started_at"),
            finished_at=when("finished_at"),
            result=json.loads(f["result"]) if state == "succeeded" and f.get("result") else None,
            error=(json.loads(f["error"]) or None)
            if f.get("error") and state != "succeeded"
            else None,
            partial=partial if state in ("cancelled", "timed_out", "failed", "running") else None,
            cancel_requested=f.get("cancel_requested") == "1",
            metadata=json.loads(f["metadata"]) if f.get("metadata") else None,
        )

    @classmethod
    def from_row(cls, row: TaskRow) -> TaskOut:
        created = aware(row.created_at)
        assert created is not None
        return cls(
            task_id=row.id,
            state=row.state,
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
            result=row.result if row.state == "succeeded" else None,  # type: ignore[arg-type]
            error=row.error if row.state != "succeeded" else None,  # type: ignore[arg-type]
            partial=row.partial if row.state in ("cancelled", "timed_out", "failed") else None,
            metadata=row.metadata_,  # type: ignore[arg-type]
        )


class TaskList(BaseModel):
    tasks: list[TaskOut]
    next_cursor: str | None


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(default_factory=dict)
