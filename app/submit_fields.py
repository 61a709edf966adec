"""Field types of the submit body for when a task runs (`run_at`) and what it does to a
busy conversation (`if_busy`), with the cross-field rules as JSON Schema for the API
document (`TaskCreate` checks the same rules in its validator)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, JsonValue, WithJsonSchema
from pydantic_core import PydanticCustomError

IfBusy = Literal["enqueue", "reject", "interrupt", "replace_queued"]
# A `run_at` this far in the past is taken as "now" (clocks differ a little); further: 422.
RUN_AT_PAST_TOLERANCE = 5.0


def _unix_time(value: Any) -> float:
    """`run_at`: an ISO 8601 date-time with its time zone, or unix seconds (a number)."""
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.upper())  # RFC 3339 allows "t" and "z"
        except ValueError:
            when = None
        if when is None or when.tzinfo is None:
            raise PydanticCustomError(
                "date_time", "must be an ISO 8601 date-time with a time zone, or unix seconds"
            )
        return when.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("date_time", "must be an ISO 8601 date-time with a time "
                                  "zone (a string), or unix seconds (a number)")  # fmt: skip
    try:
        seconds = float(value)
    except OverflowError:  # an integer beyond any float
        seconds = math.inf
    if not math.isfinite(seconds):
        raise PydanticCustomError("finite_number", "must be a finite number, not NaN or Infinity")
    return seconds


UnixTime = Annotated[
    float,
    BeforeValidator(_unix_time),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}]}),
]
_SET: JsonValue = {"not": {"type": "null"}}  # in these rules null counts as absent
# What `TaskCreate` refuses about if_busy and schedules together, as JSON Schema.
SCHEDULE_RULES: list[JsonValue] = [
    {"not": {"required": ["run_at", "delay_seconds"],
             "properties": {"run_at": _SET, "delay_seconds": _SET}}},
    {"anyOf": [{"not": {"required": ["if_busy"], "properties": {"if_busy": _SET}}},
               {"required": ["session_id"], "properties": {"session_id": _SET}}]},
    {"anyOf": [{"properties": {"if_busy": {"enum": ["enqueue", None]}}},
               {"properties": {"run_at": {"type": "null"}, "delay_seconds": {"type": "null"}}}]},
]  # fmt: skip
