"""Recurring schedules: when a cron expression fires in a time zone, the rules a schedule
must meet, and the names a firing leaves behind.

An expression has five fields (`minute hour day month weekday`), six with seconds first
(`*/10 * * * * *`, as Quartz and Spring write them), or is a nickname (`@hourly`,
`@daily`, ...). croniter evaluates it in the schedule's IANA zone, so `0 9 * * *` is 09:00
there all year. Daylight saving: a time skipped when clocks go forward fires at the first
time after the gap (02:30 becomes 03:00); a time repeated when they go back fires once if
the hour field names hours (a daily `30 2 * * *` runs once), and at both instants if it is
`*` (`0 * * * *` stays hourly in real time).

A firing's task id is derived from (schedule, due time): the CREATE script refuses an id
that exists, so a due time that two maintenance instances both reach still makes one task
(`tasks/schedule_sweep.py`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterError, croniter

MAX_CRON_CHARS = 120
NICKNAMES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
# The minimum interval is checked over this many firings, at most this far ahead.
GAP_SAMPLE = 1000
GAP_HORIZON = 400 * 86_400.0
# Metadata a fired task carries: which schedule fired it, for which due time.
SCHEDULE_ID_KEY = "schedule_id"
SCHEDULED_FOR_KEY = "scheduled_for"
RESERVED_METADATA = (SCHEDULE_ID_KEY, SCHEDULED_FOR_KEY)
_FIRING_NAMESPACE = uuid.UUID("3c7f0a52-8d7e-4b8e-9f1e-5a2f6e1d9b40")
# croniter's Jenkins-style `H` (hashed) and random `R` fields would move between two
# evaluations of one schedule: refused.
_UNSTABLE = re.compile(r"(^|[\s,])[HhRr](?=$|[\s,(/])")


class ScheduleError(ValueError):
    """A schedule the API refuses (422): `kind` is the error type, `field` where."""

    def __init__(self, kind: str, field: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Cron:
    """A valid cron expression in a time zone."""

    expression: str
    zone: ZoneInfo

    @property
    def _fixed_hours(self) -> bool:
        return bool(croniter(self.expression, **self._options()).expanded[1] != ["*"])

    def _options(self) -> dict[str, bool]:
        return {"second_at_beginning": len(self.expression.split()) == 6}

    def firings(self, after: float) -> Iterator[float]:
        """Unix times it fires at, strictly after `after`, in order (ends where croniter
        finds no more, e.g. past 2099)."""
        fixed = self._fixed_hours
        it = croniter(self.expression, datetime.fromtimestamp(after, self.zone), **self._options())
        last = after
        while True:
            try:
                when: datetime = it.get_next(datetime)
            except CroniterBadDateError:
                return
            if fixed and when.fold == 1 and when.replace(fold=0).utcoffset() != when.utcoffset():
                continue  # the second pass through a repeated wall-clock time
            # Two times in a skipped hour both move to its end: one firing.
            if when.timestamp() > last:
                last = when.timestamp()
                yield last

    def next_after(self, after: float) -> float | None:
        return next(self.firings(after), None)

    def shortest_gap(self, after: float) -> float | None:
        """The shortest time between two consecutive firings over the next GAP_SAMPLE
        firings (at most GAP_HORIZON ahead); None if it fires less than twice."""
        shortest: float | None = None
        previous: float | None = None
        for count, when in enumerate(self.firings(after)):
            if previous is not None:
                gap = when - previous
                shortest = gap if shortest is None else min(shortest, gap)
            if count >= GAP_SAMPLE or when - after > GAP_HORIZON:
                break
            previous = when
        return shortest


@cache
def _zone_names() -> frozenset[str]:
    # Not the machine-dependent aliases some systems list.
    return frozenset(available_timezones()) - {"localtime", "posixrules", "Factory"}


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name` (from the system's database, else the tzdata package)."""
    if name not in _zone_names():
        raise ScheduleError("unknown_timezone", "timezone", f"timezone: {name[:64]!r} is not "
                            "an IANA time zone (e.g. 'UTC', 'Europe/Berlin')")  # fmt: skip
    return ZoneInfo(name)


def parse_cron(expression: str, timezone: str) -> Cron:
    """The schedule's `Cron`, or ScheduleError naming what is wrong."""
    where = zone(timezone)
    text = " ".join(expression.split())
    if text.startswith("@"):
        text = text.lower()
    fields = text.split(" ")

    def bad(problem: str) -> ScheduleError:
        return ScheduleError("invalid_cron", "cron", f"cron: {problem}")

    if len(text) > MAX_CRON_CHARS:
        raise bad(f"longer than {MAX_CRON_CHARS} characters")
    if not text.isascii():
        raise bad("use ASCII characters only")
    if text.startswith("@"):
        if text not in NICKNAMES:
            raise bad(f"unknown nickname {text[:20]!r}; known: {', '.join(NICKNAMES)}")
    elif len(fields) not in (5, 6):
        raise bad(f"has {len(fields)} fields; give 5 (minute hour day month weekday) or 6 "
                  "(second first)")  # fmt: skip
    if _UNSTABLE.search(text):
        raise bad("hashed (H) and random (R) fields are not supported")
    cron = Cron(text, where)
    try:
        croniter(text, **cron._options())
        first = cron.next_after(datetime.now(UTC).timestamp())
    except (CroniterBadCronError, CroniterError, ValueError, KeyError) as exc:
        raise bad(str(exc)[:200]) from None
    if first is None:
        raise bad("never fires (no such date)")
    return cron


def check_interval(cron: Cron, minimum: float, now: float) -> None:
    """ScheduleError if two consecutive firings come closer than `minimum` seconds."""
    gap = cron.shortest_gap(now)
    if gap is not None and gap < minimum:
        raise ScheduleError("schedule_too_frequent", "cron", f"cron: fires {gap:g} s apart; "
                            f"the minimum is {minimum:g} s (SCHEDULE_MIN_INTERVAL)")  # fmt: skip


def firing_task_id(schedule_id: str, due: float) -> str:
    """The id of the task a schedule makes for one due time (the same for every instance)."""
    return str(uuid.uuid5(_FIRING_NAMESPACE, f"{schedule_id}|{due:.0f}"))


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
