"""Typed shapes of what the gateway returns: a task, a page of tasks, an event.

Fields the gateway adds later are ignored, so an older client keeps working; `state` and an
event's `type` are plain strings for the same reason (compare with the constants below).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

QUEUED, PAUSED, RUNNING = "queued", "paused", "running"
SUCCEEDED, FAILED, CANCELLED, TIMED_OUT = "succeeded", "failed", "cancelled", "timed_out"
TERMINAL_STATES = frozenset({SUCCEEDED, FAILED, CANCELLED, TIMED_OUT})
# Terminal event types have the same names as the states they end in.
TERMINAL_EVENTS = TERMINAL_STATES


class TaskResult(BaseModel):
    content: str
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None


class TaskError(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    message: str


class Task(BaseModel):
    """A task as `GET /v1/tasks/{id}` returns it (also the answer of submit and control)."""

    task_id: str
    state: str
    queue: str
    priority: int
    estimated_seconds: float
    estimate_source: str
    agent_id: str
    session_id: str | None = None
    attempts: int = 0
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: TaskResult | None = None
    error: TaskError | None = None
    partial: str | None = None
    cancel_requested: bool = False
    metadata: dict[str, Any] | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == SUCCEEDED


class TaskPage(BaseModel):
    """One page of `GET /v1/tasks`, newest first; `next_cursor` is None on the last page."""

    tasks: list[Task]
    next_cursor: str | None = None


class Event(BaseModel):
    """One task event: `seq` rises by one per event of the task, exactly one is terminal."""

    type: str
    task_id: str
    seq: int
    ts: float
    data: dict[str, Any] = {}

    @property
    def terminal(self) -> bool:
        return self.type in TERMINAL_EVENTS

    @property
    def delta(self) -> str:
        """The text a `progress` event adds ("" for other events)."""
        value = self.data.get("delta") if self.type == "progress" else None
        return value if isinstance(value, str) else ""
