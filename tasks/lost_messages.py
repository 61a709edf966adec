"""Queued tasks whose message is gone: re-dispatch them (run by `tasks.maintenance`).

kombu's Redis transport pops a message (BRPOP) and only then records it in its `unacked`
hash; a worker killed between the two (or whose pool fails right there) loses the message,
and its task would stay `queued` forever. `restore_orphans` cannot see it (it is in no
hash), so this reconciler looks from the other side: a task that is queued and not parked,
held or due, whose current dispatch message is neither in its queue's lists nor in
`unacked` on two sweeps at least ORPHAN_SECONDS apart, gets a new dispatch number (so a
stray old message cannot also run it: claim.lua fences on it) and is published again.

Cost: one sweep per ORPHAN_SECONDS, only over tasks older than ORPHAN_SECONDS with no lease
(`keys.DEADLINES`, which holds every live task, less `keys.LEASES`, the running ones),
scanning the lists with LRANGE in chunks, and `unacked` only for candidates not in them.
"""

from __future__ import annotations

import json
import logging
import time

from kombu.transport.redis import PRIORITY_STEPS, Channel

from taskrecord import keys
from taskrecord.dispatch import message_id
from taskrecord.live import LiveStore, text
from taskrecord.live_scripts import REDISPATCH_LOST
from taskrecord.publish import publish_due
from taskrecord.settings import Settings

log = logging.getLogger(__name__)

CHUNK = 500


def queue_lists(queue: str) -> list[str]:
    """kombu's Redis lists of one queue: the name, and its priority siblings."""
    return [f"{queue}{Channel.sep}{p}" if p else queue for p in PRIORITY_STEPS]


class LostMessages:
    def __init__(self, settings: Settings, live: LiveStore) -> None:
        self.live = live
        self.every = settings.orphan_seconds
        self.absolute = settings.absolute_time_limit
        self._last = float("-inf")  # monotonic time of the last sweep
        # task id -> (dispatch, when its message was first seen missing: monotonic)
        self._suspects: dict[str, tuple[str, float]] = {}

    def run_once(self) -> int:
        mono = time.monotonic()
        if mono - self._last < self.every:
            return 0
        self._last = mono
        now = time.time()
        queued = self._queued(now)
        present = self._present(queued)
        lost: list[str] = []
        suspects: dict[str, tuple[str, float]] = {}
        for task_id, (dispatch, _queue) in queued.items():
            if message_id(task_id, int(dispatch or 0)) in present:
                continue
            seen = self._suspects.get(task_id)
            first = seen[1] if seen is not None and seen[0] == dispatch else mono
            if mono - first >= self.every:
                lost.append(task_id)
            else:
                suspects[task_id] = (dispatch, first)
        self._suspects = suspects
        return self._redispatch(lost, {t: queued[t][0] for t in lost}, now)

    def _queued(self, now: float) -> dict[str, tuple[str, str]]:
        """Queued tasks older than a sweep that nothing else will publish: id -> (dispatch,
        queue). A task's deadline is at least its creation plus the absolute limit."""
        client = self.live.redis
        newest = now - self.every + self.absolute
        found: dict[str, tuple[str, str]] = {}
        start = 0
        while True:
            page = [text(v) for v in client.zrangebyscore(keys.DEADLINES, "-inf", newest,
                                                          start, CHUNK)]  # fmt: skip
            if not page:
                return found
            start += len(page)
            # Only tasks without a lease: a leased one is running (claim.lua takes the lease,
            # every way back to queued drops it), so a page of running tasks costs one
            # ZMSCORE, not a read each.
            leased = client.zmscore(keys.LEASES, page)
            ids = [task_id for task_id, lease in zip(page, leased, strict=True) if lease is None]
            with client.pipeline(transaction=False) as pipe:
                for task_id in ids:
                    pipe.hmget(keys.task_key(task_id), "state", "dispatch", "parked",
                               "held_until", "queue", "created_at", "scheduled_for")  # fmt: skip
                    pipe.zscore(keys.DISPATCH_DUE, task_id)
                answers = pipe.execute()
            for i, task_id in enumerate(ids):
                raw, due = answers[2 * i], answers[2 * i + 1]
                state, dispatch, parked, held, queue, created, scheduled = (
                    text(v or b"") for v in raw
                )
                since = max(float(created or 0), float(scheduled or 0))
                if (
                    state == "queued" and not parked and due is None and queue
                    and float(held or 0) <= now and 0 < since <= now - self.every
                ):  # fmt: skip
                    found[task_id] = (dispatch, queue)
            if len(page) < CHUNK:
                return found

    def _present(self, queued: dict[str, tuple[str, str]]) -> set[str]:
        """Ids of the run messages in the queued tasks' queue lists and, only for those not
        found there, in kombu's `unacked` hash (read only when a candidate is missing from the
        lists: it can be large, e.g. messages held in a breaker wait)."""
        client = self.live.redis
        queues = {queue for _dispatch, queue in queued.values()}
        wanted = {
            message_id(task_id, int(dispatch or 0)) for task_id, (dispatch, _q) in queued.items()
        }
        ids: set[str] = set()
        for name in (lst for queue in sorted(queues) for lst in queue_lists(queue)):
            start = 0
            while True:
                chunk = client.lrange(name, start, start + CHUNK - 1)
                ids.update(_message_id(raw) for raw in chunk)
                if len(chunk) < CHUNK:
                    break
                start += len(chunk)
        if wanted - ids:
            for _tag, raw in client.hscan_iter("unacked", count=CHUNK):
                ids.add(_unacked_id(raw))
        return ids

    def _redispatch(self, lost: list[str], missing: dict[str, str], now: float) -> int:
        redone = []
        for task_id in lost:
            key = keys.task_key(task_id)
            if self.live.scripts.run(REDISPATCH_LOST, [key, keys.DISPATCH_DUE],
                                     [task_id, missing[task_id], repr(now)]):  # fmt: skip
                log.warning("task %s: queued but its message was lost; re-dispatched", task_id)
                redone.append(task_id)
        publish_due(self.live, redone)
        return len(redone)


def _message_id(raw: bytes | str) -> str:
    try:
        message = json.loads(raw)
        return str((message.get("headers") or {}).get("id", ""))
    except (ValueError, AttributeError):
        return ""


def _unacked_id(raw: bytes | str) -> str:
    try:
        message = json.loads(raw)[0]
        return str((message.get("headers") or {}).get("id", ""))
    except (ValueError, AttributeError, IndexError, KeyError, TypeError):
        return ""
