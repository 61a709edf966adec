"""Publish tasks that are due (woken from a wait, retry delay over, publisher died)."""

from __future__ import annotations

from collections.abc import Iterable

from celery import Celery

from taskrecord.dispatch import dispatch
from taskrecord.live import LiveStore, text


def publish_due(live: LiveStore, celery: Celery, task_ids: Iterable[str]) -> int:
    """Hand each still-queued task to Celery with its current dispatch number."""
    sent = 0
    for task_id in task_ids:
        outcome = [text(v) for v in live.run(live.calls.take_due(task_id))]
        if outcome[0] == "publish":
            dispatch(celery, task_id, outcome[1], int(outcome[2]))
            sent += 1
    return sent
