"""Request and response shapes of /v1/schedules."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from app.schemas import TaskCreate, TaskError
from taskrecord.schedules import MAX_CRON_CHARS, RESERVED_METADATA
from taskrecord.store.models import ScheduleRow
from taskrecord.store.repo import utc
from taskrecord.store.schedules import stamp

# What a schedule's task may say: the rest of `POST /v1/tasks` (a start time, a busy
# policy...) is about one submission, not a recurring one.
TASK_FIELDS = frozenset(
    {"message", "messages", "agent_id", "session_id", "priority", "estimated_seconds",
     "timeout_seconds", "metadata", "webhook_url"}
)  # fmt: skip
OTHER_FIELDS = sorted(set(TaskCreate.model_fields) - TASK_FIELDS)
NEVER_SHOWN = 32_503_680_000.0  # year 3000: a schedule with no firing left shows none
SCHEDULE_EXAMPLE: JsonValue = {
    "name": "weekday digest",
    "cron": "0 9 * * mon-fri",
    "timezone": "Europe/Berlin",
    "task": {"message": "Summarise yesterday's build failures", "session_id": "digest"},
}


class ScheduleCreate(BaseModel):
    """POST /v1/schedules body."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [SCHEDULE_EXAMPLE]})

    cron: Annotated[str, StringConstraints(min_length=1, max_length=MAX_CRON_CHARS)] = Field(
        description="Five fields (`minute hour day month weekday`), six with seconds first, "
        "or a nickname (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`). Firings at "
        "least SCHEDULE_MIN_INTERVAL apart.",
        # What a valid expression is cannot be a JSON Schema: named as a format.
        json_schema_extra={"format": "cron", "examples": ["0 9 * * mon-fri", "@daily"]},
    )
    timezone: Annotated[str, StringConstraints(min_length=1, max_length=64)] = Field(
        "UTC",
        description="IANA time zone the expression is read in, e.g. `Europe/Berlin`.",
        json_schema_extra={"format": "iana-time-zone"},
    )
    task: TaskCreate = Field(
        description="The task each firing submits: the `POST /v1/tasks` body (message or "
        "messages, agent_id, session_id, priority, estimated_seconds, timeout_seconds, "
        f"metadata, webhook_url); its metadata gets {' and '.join(RESERVED_METADATA)}. "
        "Its other fields may only be null.",
        # In the document too: the other fields of a task body, null or absent.
        json_schema_extra={"properties": {name: {"type": "null"} for name in OTHER_FIELDS}},
    )
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        None, description="Your label for it."
    )

    @field_validator("name")
    @classmethod
    def _encodable(cls, value: str | None) -> str | None:
        if value is not None and not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise PydanticCustomError(
                    "lone_surrogate", "contains a lone UTF-16 surrogate, not valid Unicode"
                ) from None
        return value


class ScheduleSummary(BaseModel):
    id: str
    name: str | None
    cron: str
    timezone: str
    created_at: datetime
    next_run: datetime | None = Field(description="When it fires next (UTC).")
    last_run: datetime | None = Field(description="The due time it last fired for (UTC).")
    last_task_id: str | None = Field(description="The task its last firing made.")
    last_error: TaskError | None = Field(
        description="Why its last firing made no task (a tenant limit, ...); null after a "
        "firing that made one."
    )
    runs: int = Field(description="Tasks it has made.")

    @classmethod
    def fields_of(cls, row: ScheduleRow) -> dict[str, Any]:
        due = stamp(row.next_run_at)
        return {
            "id": row.id,
            "name": row.name,
            "cron": row.cron,
            "timezone": row.timezone,
            "created_at": utc(stamp(row.created_at)),
            "next_run": utc(due) if due < NEVER_SHOWN else None,
            "last_run": utc(stamp(row.last_run_at)) if row.last_run_at else None,
            "last_task_id": row.last_task_id,
            "last_error": row.last_error or None,
            "runs": row.runs or 0,
        }

    @classmethod
    def from_row(cls, row: ScheduleRow) -> ScheduleSummary:
        return cls.model_validate(cls.fields_of(row))


class ScheduleOut(ScheduleSummary):
    task: dict[str, JsonValue] = Field(description="The task each firing submits, as given.")

    @classmethod
    def from_row(cls, row: ScheduleRow) -> ScheduleOut:
        return cls.model_validate({**cls.fields_of(row), "task": row.task})


class ScheduleList(BaseModel):
    schedules: list[ScheduleSummary] = Field(description="Oldest first.")
