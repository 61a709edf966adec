"""The maintenance side of recurring schedules: each due schedule becomes a normal task.

Schedules live in the SQL store (`taskrecord/store/schedules.py`); Redis holds their due
index (`v2:schedules-due`, schedule id -> due time), which this sweep reads every tick and
rebuilds from SQL every RECONCILE_EVERY seconds (a schedule whose index entry was lost, or
never written because its gateway died, is due again within that time).

Exactly once per due time, with any number of maintenance instances:
1. an instance claims a due entry atomically (`CLAIM_DUE`: its score moves CLAIM_SECONDS ahead,
   so the others skip it);
2. it makes the task through the same CREATE script as `POST /v1/tasks`, under an id derived
   from (schedule, due time): CREATE refuses an id that exists, so an instance that claims
   the same due time again, after the first one died or stalled past its claim, finds the
   task made and makes no second one;
3. it records the firing in SQL by moving `next_run_at` from that due time to the next with a
   compare-and-set (only one instance can), then moves the index entry there.

A due time that passed while no maintenance ran fires once when one is back (missed times
are not replayed). A firing the tenant's limits refuse (rate, unfinished tasks, queue full,
a priority or agent no longer allowed) makes no task: the schedule shows it as `last_error`
and waits for its next time.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from taskrecord import keys
from taskrecord.live import LiveStore, text
from taskrecord.live_scripts import CLAIM_DUE
from taskrecord.new_task import (
    TaskSpec,
    create_call,
    estimate_now,
    outcome_of,
    refusal,
    task_fields,
)
from taskrecord.schedules import (
    SCHEDULE_ID_KEY,
    SCHEDULED_FOR_KEY,
    ScheduleError,
    firing_task_id,
    iso,
    parse_cron,
)
from taskrecord.settings import Settings
from taskrecord.store.models import ScheduleRow
from taskrecord.store.schedules import ScheduleStore, stamp
from taskrecord.tenants import TenantPolicies

log = logging.getLogger(__name__)
BATCH = 100
CLAIM_SECONDS = 60.0
RECONCILE_EVERY = 60.0
RETRY_BROKEN = 3600.0  # a schedule that can no longer be evaluated is looked at again after
NEVER = datetime(9999, 1, 1, tzinfo=UTC).timestamp()  # no firing left (croniter ends at 2099)
REFUSALS = {
    "full": ("queue_full", "the {queue} queue was full ({detail} tasks)"),
    "tenant_full": ("tenant_queue_full", "this tenant had {detail} unfinished tasks (its limit)"),
    "rate": ("rate_limited", "this tenant submitted faster than its rate limit"),
}


class ScheduleSweep:
    def __init__(self, settings: Settings, live: LiveStore, schedules: ScheduleStore) -> None:
        self.settings = settings
        self.live = live
        self.schedules = schedules
        self.tenants = TenantPolicies(settings)
        self._claim = live.redis.register_script(CLAIM_DUE)
        self._last_reconcile = float("-inf")

    def run_once(self) -> int:
        """Fire what is due; answers how many tasks were made."""
        if time.monotonic() - self._last_reconcile > RECONCILE_EVERY:
            self.reconcile()
            self._last_reconcile = time.monotonic()
        now = time.time()
        due = self.live.redis.zrangebyscore(keys.SCHEDULES_DUE, "-inf", now, 0, BATCH)
        made = 0
        for schedule_id in (text(m) for m in due):
            if not self._claim(keys=[keys.SCHEDULES_DUE], args=[schedule_id, now,
                                                               now + CLAIM_SECONDS]):  # fmt: skip
                continue  # another instance has it
            try:
                made += self.fire(schedule_id)
            except Exception:  # one broken schedule must not stop the others
                log.exception("schedule %s: firing failed; retried after its claim", schedule_id)
        return made

    def reconcile(self) -> int:
        """Index every schedule the SQL store has and the due index lacks. The index is
        read first: a schedule created meanwhile is in SQL already, or its gateway's own
        ZADD wins (NX)."""
        indexed = {text(m) for m in self.live.redis.zrange(keys.SCHEDULES_DUE, 0, -1)}
        missing = {sid: due for sid, due in self.schedules.due_times().items()
                   if sid not in indexed}  # fmt: skip
        if missing:
            self.live.redis.zadd(keys.SCHEDULES_DUE, missing, nx=True)
            log.info("schedules: %d restored to the due index", len(missing))
        return len(missing)

    def fire(self, schedule_id: str) -> int:
        row = self.schedules.get(schedule_id)
        if row is None:  # deleted
            self.live.redis.zrem(keys.SCHEDULES_DUE, schedule_id)
            return 0
        due, now = stamp(row.next_run_at), time.time()
        if due > now:  # the index was behind the row (another instance recorded a firing)
            self.live.redis.zadd(keys.SCHEDULES_DUE, {schedule_id: due}, xx=True)
            return 0
        try:
            next_run = parse_cron(row.cron, row.timezone).next_after(now)
        except ScheduleError as exc:  # e.g. a time zone gone from the zone database
            log.error("schedule %s: %s", schedule_id, exc.kind)
            self._record(row, now + RETRY_BROKEN, None, {"type": exc.kind, "message": str(exc)})
            return 0
        task_id, error = self.make_task(row, due)
        self._record(row, NEVER if next_run is None else next_run, task_id, error)
        return int(task_id is not None)

    def make_task(self, row: ScheduleRow, due: float) -> tuple[str | None, dict[str, Any] | None]:
        """The due time's task through the CREATE script: (its id, None), or (None, why
        none was made). Its id exists already if an earlier claim of this due time made it."""
        settings, policy = self.settings, self.tenants(row.tenant)
        stamps = {SCHEDULE_ID_KEY: row.id, SCHEDULED_FOR_KEY: iso(due)}
        spec = TaskSpec.from_body(settings, row.tenant, row.task, stamps)
        refused = refusal(settings, policy, spec)
        if refused is not None:
            return None, {"type": refused.type, "message": refused.message}
        task_id = firing_task_id(row.id, due)
        fields = task_fields(settings, policy, spec, task_id, estimate_now(self.live.redis, spec),
                             time.time())  # fmt: skip
        outcome = outcome_of(self.live.run(create_call(self.live.calls, settings, policy, fields)))
        if outcome in ("1", "0"):
            log.info("schedule %s: task %s for %s", row.id, task_id, iso(due))
            return task_id, None
        kind, _, detail = outcome.partition(":")
        type_, message = REFUSALS.get(kind, ("refused", "the task was refused ({kind})"))
        log.warning("schedule %s: no task for %s (%s)", row.id, iso(due), type_)
        shown = message.format(queue=fields["queue"], detail=detail, kind=kind)
        return None, {"type": type_, "message": shown}

    def _record(
        self, row: ScheduleRow, next_run: float, task_id: str | None, error: dict[str, Any] | None
    ) -> None:
        if self.schedules.advance(row, datetime.fromtimestamp(next_run, UTC), task_id, error):
            # XX: a schedule deleted meanwhile does not come back.
            self.live.redis.zadd(keys.SCHEDULES_DUE, {row.id: next_run}, xx=True)
