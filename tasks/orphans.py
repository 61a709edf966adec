"""Messages fetched by a worker that died before claiming their task: put them back (run by
`tasks.maintenance`).

With acks_late, a fetched message sits in kombu's `unacked` hash (indexed by fetch time in
`unacked_index`) until its ack; our claim (claim.lua) removes a run message's record as it
claims the task. Still, the hash can hold many messages that are not orphans: held in a
breaker wait, or left by a worker whose claims did not remove them (an older release, a
claim made without its delivery tag), and re-reading the oldest entries every round would
examine the same ones again and again (and never reach a real orphan behind 200 of them),
so the sweep walks `unacked_index` in fetch order with a cursor: each message is looked at
once when it becomes ORPHAN_SECONDS old. A message whose task is running is settled (its
claim happened; if that worker dies, lease recovery re-queues the task with a new dispatch
and this message is stale), so it is only seen again by the slow full pass (every
RESWEEP_SECONDS), which drops stale messages. A message held by a live
worker (breaker wait) is looked at again every HELD_RECHECK seconds until its hold lapses.
A message indexed behind the cursor (a worker whose clock lags by more than ORPHAN_SECONDS)
waits for the next full pass.
"""

from __future__ import annotations

import json
import logging
import time
from typing import cast

from taskrecord.broker import RUN_TASK
from taskrecord.live import LiveStore, text
from taskrecord.settings import Settings

log = logging.getLogger(__name__)

INDEX, HASH = "unacked_index", "unacked"  # kombu's Redis transport
PAGE = 200  # messages looked at per round at most
RESWEEP_SECONDS = 300.0  # a full pass over settled messages (stale ones are dropped)
HELD_RECHECK = 1.0


class OrphanSweep:
    def __init__(self, settings: Settings, live: LiveStore) -> None:
        self.live = live
        self.orphan_seconds = settings.orphan_seconds
        self._cursor = float("-inf")  # fetch time up to which this pass has looked
        self._at_cursor: set[str] = set()  # tags fetched exactly at the cursor, looked at
        self._pass_started = time.monotonic()
        self._held: dict[str, float] = {}  # tag -> monotonic time to look again

    def run_once(self) -> int:
        mono = time.monotonic()
        if mono - self._pass_started >= RESWEEP_SECONDS:
            self._cursor, self._at_cursor, self._pass_started = float("-inf"), set(), mono
        due = [tag for tag, at in self._held.items() if at <= mono][:PAGE]
        for tag in due:
            del self._held[tag]
        return self._examine(due + self._next_page(), mono)

    def _next_page(self) -> list[str]:
        cutoff = time.time() - self.orphan_seconds
        low = "-inf" if self._cursor == float("-inf") else repr(self._cursor)
        rows = self.live.redis.zrangebyscore(
            INDEX, low, cutoff, 0, PAGE + len(self._at_cursor), withscores=True
        )
        page: list[str] = []
        for raw_tag, raw_score in cast(list[tuple[bytes, float]], rows):
            tag, score = text(raw_tag), float(raw_score)
            if score == self._cursor and tag in self._at_cursor:
                continue
            if len(page) == PAGE:
                break
            if score != self._cursor:
                self._cursor, self._at_cursor = score, set()
            self._at_cursor.add(tag)
            page.append(tag)
        return page

    def _examine(self, tags: list[str], mono: float) -> int:
        if not tags:
            return 0
        client = self.live.redis
        restored = 0
        for tag, raw in zip(tags, client.hmget(HASH, tags), strict=True):
            if raw is None:  # acked meanwhile
                client.zrem(INDEX, tag)
                continue
            message, _exchange, routing_key = json.loads(raw)
            headers = message.get("headers") or {}
            if headers.get("task") != RUN_TASK:
                continue
            task_id, _, suffix = str(headers.get("id", "")).partition(".")
            # As kombu marks a message it restores itself.
            headers["redelivered"] = True
            message["properties"]["delivery_info"]["redelivered"] = True
            call = self.live.calls.restore_orphan(
                task_id, tag, suffix or "1", routing_key, json.dumps(message)
            )
            outcome = text(self.live.run(call))
            if outcome == "held":
                self._held[tag] = mono + HELD_RECHECK
            elif outcome == "restored":
                log.warning("task %s: its worker died before starting it; re-queued", task_id)
                restored += 1
        return restored
