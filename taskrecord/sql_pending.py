"""The SQL store is written behind the live record, best-effort.

The live hash in Redis is the truth while a task lives; its SQL row is a copy. A SQL write
from a worker or a control call must never stop or fail a run (PostgreSQL may be away for
a while), so a failed write only leaves the task id in `keys.SQL_PENDING`. Maintenance then
copies the task's CURRENT live hash into SQL (`retry_pending`) until a copy sticks: a
later copy of the whole record repairs whichever writes were lost, in any order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import cast

import redis

from taskrecord import keys
from taskrecord.live import LiveStore, score_arg, text
from taskrecord.live_scripts import FORGET_SQL_PENDING
from taskrecord.mirror import mirror_live
from taskrecord.record import BadTaskRecord, TaskRecord
from taskrecord.states import TERMINAL_STATES
from taskrecord.store.repo import TaskStore

log = logging.getLogger(__name__)

# The hash fields a SQL copy is made of: a copy is current while these are unchanged.
_COPIED = ("state", "queue", "attempts", "started_at", "finished_at", "result", "error")


def remember(client: redis.Redis, task_id: str) -> None:
    client.zadd(keys.SQL_PENDING, {task_id: time.time()})


def write_behind(
    client: redis.Redis,
    store: TaskStore,
    task_id: str,
    live: Mapping[str, str] | TaskRecord,
    partial: str | None,
    detail: str | None,
) -> bool:
    """Mirror the task to SQL; on failure remember it for maintenance. False: not written."""
    try:
        mirror_live(store, task_id, live, partial, detail)
        return True
    except Exception as exc:  # any SQL trouble: the live record stays the truth
        write_failed(client, task_id, exc)
        return False


def write_failed(client: redis.Redis, task_id: str, exc: BaseException) -> None:
    """A task's SQL write failed: say so and leave it to maintenance (`retry_pending`)."""
    # The exception's type only: its text may quote the row (user text).
    log.warning("task %s: SQL write failed (%s); retried later", task_id, type(exc).__name__)
    remember(client, task_id)


def forget_copied(live: LiveStore, copied: Sequence[tuple[str, float]]) -> None:
    """These tasks' copies landed: drop their entries (those still at the score given;
    one that failed again since stays). Redis away: the entries stay, and maintenance
    copies those tasks once more (the same rows again: harmless)."""
    args = [item for task_id, score in copied for item in (task_id, score_arg(score))]
    try:
        live.scripts.run(FORGET_SQL_PENDING, [keys.SQL_PENDING], args)
    except redis.RedisError as exc:
        log.warning("%d SQL copies landed but stay pending (%s)", len(copied),
                    type(exc).__name__)  # fmt: skip


def retry_pending(live: LiveStore, store: TaskStore, limit: int = 200) -> int:
    """Copy each pending task that is due (a failed write: at once; an end whose copy its
    ender had not confirmed: after its grace) from its current live hash into SQL. Raises
    while SQL is down (the entries stay). Returns how many copies stuck."""
    client = live.redis
    done = 0
    pending = client.zrangebyscore(
        keys.SQL_PENDING, "-inf", time.time(), start=0, num=limit, withscores=True
    )
    for raw, score in cast(list[tuple[bytes, float]], pending):
        task_id = text(raw)
        fields = live.get(task_id)
        if fields.get("id") and fields.get("state"):
            state = fields["state"]
            # An ended task's row keeps its partial output, as the end's own write does.
            partial = None
            if state in TERMINAL_STATES:
                partial = text(client.get(keys.partial_key(task_id)) or b"")
            try:
                mirror_live(store, task_id, fields, partial, "written behind")
            except BadTaskRecord:
                log.warning("task %s: unreadable live record; not copied to SQL", task_id)
            else:
                # Changed while being copied: the copy may be older than the row; again.
                after = live.get(task_id)
                if any(after.get(k) != fields.get(k) for k in _COPIED):
                    continue
                done += 1
        live.scripts.run(FORGET_SQL_PENDING, [keys.SQL_PENDING], [task_id, repr(score)])
    return done
