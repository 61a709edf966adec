"""When a schedule fires (cron in a time zone, daylight saving), what it refuses, and the
record a firing makes, without any server."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from taskrecord.estimator import Estimate
from taskrecord.new_task import TaskSpec, refusal, task_fields
from taskrecord.schedules import (
    ScheduleError,
    check_interval,
    firing_task_id,
    iso,
    parse_cron,
)
from taskrecord.settings import get_settings
from taskrecord.tenants import TenantPolicies

BERLIN = ZoneInfo("Europe/Berlin")


def at(zone: ZoneInfo, *parts: int) -> float:
    return datetime(*parts, tzinfo=zone).timestamp()  # type: ignore[misc]


def local(ts: float, zone: ZoneInfo = BERLIN) -> str:
    return datetime.fromtimestamp(ts, zone).isoformat()


def upcoming(expression: str, zone: str, after: float, count: int) -> list[float]:
    times = parse_cron(expression, zone).firings(after)
    return [next(times) for _ in range(count)]


def test_the_next_run_is_read_in_the_schedules_time_zone() -> None:
    after = at(UTC, 2026, 1, 5, 12, 0)  # a Monday
    assert iso(parse_cron("30 9 * * *", "Asia/Kolkata").next_after(after) or 0) == (
        "2026-01-06T04:00:00Z"
    )
    assert iso(parse_cron("0 9 * * mon-fri", "UTC").next_after(after) or 0) == (
        "2026-01-06T09:00:00Z"
    )
    assert iso(parse_cron("@daily", "America/New_York").next_after(after) or 0) == (
        "2026-01-06T05:00:00Z"
    )


def test_a_run_is_strictly_after_the_given_time() -> None:
    due = at(UTC, 2026, 1, 5, 12, 0)
    assert parse_cron("0 12 * * *", "UTC").next_after(due) == due + 86_400


def test_six_fields_put_the_seconds_first() -> None:
    after = at(UTC, 2026, 1, 5, 12, 0, 1)
    assert upcoming("*/20 * * * * *", "UTC", after, 3) == [after + 19, after + 39, after + 59]
    assert upcoming("15 30 * * * *", "UTC", after, 1) == [at(UTC, 2026, 1, 5, 12, 30, 15)]


def test_a_time_skipped_when_clocks_go_forward_fires_once_after_the_gap() -> None:
    after = at(BERLIN, 2026, 3, 28, 12, 0)
    runs = upcoming("30 2 * * *", "Europe/Berlin", after, 2)
    assert [local(t) for t in runs] == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]
    # Two times in the skipped hour are one firing, not two at the same instant.
    runs = upcoming("0,30 2 * * *", "Europe/Berlin", after, 2)
    assert [local(t) for t in runs] == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"]


def test_a_daily_time_in_the_repeated_hour_fires_once_when_clocks_go_back() -> None:
    runs = upcoming("30 2 * * *", "Europe/Berlin", at(BERLIN, 2026, 10, 24, 12, 0), 2)
    assert [local(t) for t in runs] == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


def test_an_hourly_schedule_keeps_real_hours_when_clocks_go_back() -> None:
    runs = upcoming("0 * * * *", "Europe/Berlin", at(BERLIN, 2026, 10, 25, 1, 30), 3)
    assert [runs[1] - runs[0], runs[2] - runs[1]] == [3600.0, 3600.0]
    assert [local(t) for t in runs] == [
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("* * * *", "has 4 fields"),
        ("1 2 3 4 5 6 7", "has 7 fields"),
        ("61 * * * *", "out of range"),
        ("0 0 31 2 *", "never fires"),
        ("@reboot", "unknown nickname"),
        ("H * * * *", "hashed (H) and random (R)"),
        ("R 1 * * *", "hashed (H) and random (R)"),
        ("* * * * \u0663", "ASCII"),
        ("*/5 " * 40, "longer than"),
    ],
)
def test_a_bad_cron_expression_is_refused_naming_the_problem(expression: str, problem: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_cron(expression, "UTC")
    assert caught.value.kind == "invalid_cron" and caught.value.field == "cron"
    assert caught.value.message.startswith("cron: ") and problem in caught.value.message


def test_month_names_are_not_mistaken_for_random_fields() -> None:
    assert parse_cron("0 9 * jan-mar fri", "UTC").expression == "0 9 * jan-mar fri"
    assert parse_cron("@HOURLY", "UTC").expression == "@hourly"


@pytest.mark.parametrize("name", ["Mars/Olympus", "utc", "America", "../etc/passwd", "localtime"])
def test_an_unknown_time_zone_is_refused(name: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_cron("* * * * *", name)
    assert caught.value.kind == "unknown_timezone" and caught.value.field == "timezone"


def test_a_schedule_firing_more_often_than_the_minimum_is_refused() -> None:
    now = at(UTC, 2026, 1, 5, 12, 0)
    for expression, gap in (("* * * * * *", "1"), ("0,1 9 * * *", "60"), ("*/5 * * * *", "300")):
        with pytest.raises(ScheduleError) as caught:
            check_interval(parse_cron(expression, "UTC"), 301, now)
        assert caught.value.kind == "schedule_too_frequent"
        assert f"fires {gap} s apart" in caught.value.message and "301 s" in caught.value.message
    check_interval(parse_cron("*/5 * * * *", "UTC"), 300, now)
    check_interval(parse_cron("0 0 29 2 *", "UTC"), 300, now)  # rarely: fine


def test_a_due_time_has_one_task_id_whoever_fires_it() -> None:
    first = firing_task_id("5d1e0000-0000-4000-8000-000000000001", 1_767_614_400.0)
    assert first == firing_task_id("5d1e0000-0000-4000-8000-000000000001", 1_767_614_400.0)
    assert first != firing_task_id("5d1e0000-0000-4000-8000-000000000001", 1_767_614_460.0)
    assert first != firing_task_id("5d1e0000-0000-4000-8000-000000000002", 1_767_614_400.0)


def test_a_stored_task_body_makes_the_record_a_submit_makes() -> None:
    settings = get_settings(webhook_default_urls="acme=https://hooks.example.com/x")
    policy = TenantPolicies(settings)("acme")
    body = {"message": "digest", "session_id": "s1", "priority": 7, "metadata": {"k": 1}}
    spec = TaskSpec.from_body(settings, "acme", body, {"schedule_id": "abc"})
    fields = task_fields(settings, policy, spec, "t-1", Estimate(5.0, "heuristic"), 100.0)
    assert fields["request"] == '{"messages":[{"role":"user","content":"digest"}]}'
    assert fields["metadata"] == '{"k":1,"schedule_id":"abc"}'
    assert (fields["agent_id"], fields["session_id"], fields["queue"]) == ("main", "s1", "short")
    assert fields["webhook_url"] == "https://hooks.example.com/x"  # the tenant's default
    explicit = TaskSpec.from_body(settings, "acme", {**body, "webhook_url": ""})
    assert explicit.webhook_url == ""
    assert refusal(settings, policy, spec) is None
    too_high = TaskSpec.from_body(settings, "acme", {**body, "priority": 10})
    refused = refusal(settings, policy, too_high)
    assert refused is not None and (refused.status, refused.type) == (422, "priority_not_allowed")
