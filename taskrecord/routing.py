"""Which queue a task waits in, and which run-time tier it gets."""

from __future__ import annotations

from taskrecord.settings import Settings


def choose_queue(priority: int, expected_seconds: float, settings: Settings) -> str:
    if priority > settings.priority_threshold:
        return "priority"
    return choose_tier(expected_seconds, settings)


def choose_tier(expected_seconds: float, settings: Settings) -> str:
    """`short` (5 min limit by default) or `long` (24 h), whatever the queue."""
    return "short" if expected_seconds < settings.short_threshold_seconds else "long"
