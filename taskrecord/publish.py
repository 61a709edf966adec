"""Publish tasks that are due (a retry's delay over, a scheduled run, a lost message).

The message is rendered and pushed by `lua/take_due.lua` itself (`publish` in the prelude),
so a task leaves the due set only with its message in its queue, and a re-run goes to the
head of its queue instead of waiting behind every task submitted since. Tasks woken for a
V1 slot or their conversation, re-runs without delay and manual retries are published by
the script that woke or re-queued them, not through here.
"""

from __future__ import annotations

from collections.abc import Iterable

from taskrecord.live import LiveStore, text


def publish_due(live: LiveStore, task_ids: Iterable[str]) -> int:
    """Push each still-due, still-queued task's message; how many were pushed. One script
    per task, pipelined; a task no longer due (published meanwhile) is skipped."""
    ids = list(dict.fromkeys(task_ids))
    if not ids:
        return 0
    with live.redis.pipeline(transaction=False) as pipe:
        for task_id in ids:
            live.run(live.calls.take_due(task_id), pipe)
        answers = pipe.execute()
    return sum(text(answer[0]) == "published" for answer in answers)
