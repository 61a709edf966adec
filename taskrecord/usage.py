"""V1 token usage: what one task used, UTC days, and the daily token budget's clock.

V1 reports `usage` (`prompt_tokens`, `completion_tokens`, `total_tokens`) at the end of a
successful stream; the worker keeps it in the task's `result`. The SQL store adds it to the
tenant's row of the day the task finished (`taskrecord.store.usage`), in the same
transaction that records the success, so a task counts once and usage outlives the tasks'
retention. Failed, cancelled and timed-out runs report none, so they count nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

KINDS = ("prompt", "completion", "total")


@dataclass(frozen=True)
class Tokens:
    prompt: int = 0
    completion: int = 0
    total: int = 0


def _count(value: object) -> int:
    # bool is an int; V1 never sends one, and it must not count as a token.
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def tokens_of(result: Mapping[str, object] | None) -> Tokens:
    """The tokens a task's `result` reports (zeros for a missing or malformed `usage`)."""
    usage = result.get("usage") if result else None
    if not isinstance(usage, Mapping):
        return Tokens()
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    total = _count(usage.get("total_tokens")) or prompt + completion
    return Tokens(prompt, completion, total)


def utc_day(moment: datetime | None = None) -> date:
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is None:  # SQLite hands datetimes back naive; they were written in UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).date()


def seconds_to_midnight(now: datetime) -> int:
    """Whole seconds until the next UTC day starts (at least 1): when a budget refills."""
    now = now.astimezone(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    return max(1, math.ceil((midnight - now).total_seconds()))
