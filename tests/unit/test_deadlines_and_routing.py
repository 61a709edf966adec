"""Time-limit arithmetic and routing, without any server."""

from __future__ import annotations

from taskrecord.routing import choose_queue, choose_tier
from taskrecord.settings import Settings, get_settings
from tasks.run import attempt_deadlines


def settings() -> Settings:
    return get_settings(short_time_limit=300, long_time_limit=86_400, absolute_time_limit=604_800)


def test_short_tier_gets_its_limit_and_one_promotion_to_the_long_tier() -> None:
    now = 1_000_000.0
    fields = {"created_at": str(now), "tier": "short"}
    deadline, promote_to = attempt_deadlines(fields, settings(), now)
    assert deadline == now + 300 and promote_to == now + 86_400


def test_a_promoted_or_long_task_gets_the_long_limit_and_no_promotion() -> None:
    now = 1_000_000.0
    for fields in ({"tier": "long"}, {"tier": "short", "promoted": "1"}):
        deadline, promote_to = attempt_deadlines(
            {"created_at": str(now), **fields}, settings(), now
        )
        assert deadline == now + 86_400 and promote_to is None


def test_client_timeout_lowers_the_limit_and_caps_the_promotion() -> None:
    now = 1_000_000.0
    fields = {"created_at": str(now), "tier": "short", "timeout_seconds": "600"}
    deadline, promote_to = attempt_deadlines(fields, settings(), now)
    assert deadline == now + 300 and promote_to == now + 600
    fields["timeout_seconds"] = "30"
    assert attempt_deadlines(fields, settings(), now) == (now + 30, None)


def test_absolute_limit_counts_from_submission() -> None:
    created = 1_000_000.0
    now = created + 604_800 - 10
    deadline, promote_to = attempt_deadlines({"created_at": str(created), "tier": "long"},
                                             settings(), now)  # fmt: skip
    assert deadline == created + 604_800 and promote_to is None


def test_routing_by_priority_then_expected_duration() -> None:
    s = get_settings(priority_threshold=8, short_threshold_seconds=60.0)
    assert choose_queue(9, 5.0, s) == "priority"
    assert choose_queue(8, 5.0, s) == "short"
    assert choose_queue(5, 60.0, s) == "long"
    assert choose_tier(59.9, s) == "short"
