"""Publish tasks that are due (woken from a wait, retry delay over, publisher died).

The message is pushed by `lua/take_due.lua` itself, so a task leaves the due set only with
its message in its queue, and a re-run (or a task woken for a V1 slot) goes to the head of
its queue instead of waiting behind every task submitted since.
"""

from __future__ import annotations

from collections.abc import Iterable

from taskrecord import keys
from taskrecord.live import LiveStore, text
from taskrecord.message import run_message

_ROUNDS = 3  # a task re-dispatched meanwhile is rendered again (its waker publishes it too)


def publish_due(live: LiveStore, task_ids: Iterable[str]) -> int:
    """Push each still-queued task's message for its current queue and dispatch number.

    A batch costs two round trips: read where each task goes, then one script per task."""
    ids = list(dict.fromkeys(task_ids))
    if not ids:
        return 0
    if len(ids) == 1:  # the usual case (one slot freed): no pipeline's SCRIPT EXISTS
        found = [live.redis.hmget(keys.task_key(ids[0]), "queue", "dispatch")]
    else:
        with live.redis.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.hmget(keys.task_key(task_id), "queue", "dispatch")
            found = pipe.execute()
    where = {i: (text(q or b""), text(d or b"0")) for i, (q, d) in zip(ids, found, strict=True)}
    sent = 0
    for _ in range(_ROUNDS):
        calls = [
            live.calls.take_due(task_id, queue, dispatch,
                                run_message(task_id, int(dispatch or 0), queue))
            for task_id, (queue, dispatch) in where.items()
        ]  # fmt: skip
        if len(calls) == 1:
            answers = [live.run(calls[0])]
        else:
            with live.redis.pipeline(transaction=False) as pipe:
                for call in calls:
                    live.run(call, pipe)
                answers = pipe.execute()
        changed: dict[str, tuple[str, str]] = {}
        for task_id, answer in zip(where, answers, strict=True):
            outcome = [text(v) for v in answer]
            sent += outcome[0] == "published"
            if outcome[0] == "changed":
                changed[task_id] = (outcome[1], outcome[2])
        if not changed:
            break
        where = changed
    return sent
