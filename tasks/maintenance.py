"""`python -m tasks.maintenance`: the system's housekeeping loop (run with the system).

- Crash recovery by lease: a running task whose lease ran out is re-dispatched within
  seconds (if V1 had not answered yet), or ended with a clear reason (if it had: the agent
  may have acted, so only the user may retry it). Celery's broker cannot do this for long
  tasks (see stack-facts: visibility timeout).
- Lost messages: a queued task whose message is in no queue list nor in `unacked` (its
  worker died between kombu's pop and its record) is re-dispatched (`tasks.lost_messages`).
- SQL write-behind: SQL writes that failed (the store was away) are redone from the live
  record (`taskrecord.sql_pending`); every step runs even when another one fails.
- Absolute limit: a task still queued or paused 7 days after submission ends `timed_out`.
- Retention: finished tasks older than RETENTION_DAYS leave the SQL store.
- Completion webhooks: ended tasks become deliveries, due attempts go to the workers
  (`tasks.webhook_sweep`).
- Recurring schedules: each due schedule becomes a normal task, once per due time
  (`tasks.schedule_sweep`).

Several instances may run at once: every step is an atomic script with fencing.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType

from celery import Celery

from taskrecord import keys
from taskrecord.control import TaskControl
from taskrecord.live import LiveStore, text
from taskrecord.mirror import mirror_live
from taskrecord.publish import publish_due
from taskrecord.settings import Settings, get_settings
from taskrecord.sql_pending import retry_pending
from taskrecord.states import TaskState
from taskrecord.store.deliveries import DeliveryStore
from taskrecord.store.repo import TaskStore
from taskrecord.store.schedules import ScheduleStore
from tasks.lost_messages import LostMessages
from tasks.orphans import OrphanSweep
from tasks.run import WORKER_LOST_AFTER_OUTPUT
from tasks.schedule_sweep import ScheduleSweep
from tasks.webhook_sweep import WebhookSweep

log = logging.getLogger(__name__)
RETENTION_EVERY = 600.0

TICK = 0.25  # retry delays and crash recovery are only as precise as this


class Maintenance:
    def __init__(self, settings: Settings, live: LiveStore, store: TaskStore, celery: Celery):
        self.settings = settings
        self.live = live
        self.store = store
        self.celery = celery
        self.control = TaskControl(settings, live, store, celery)
        self.webhooks = WebhookSweep(settings, live, DeliveryStore(store.engine), celery)
        self.schedules = ScheduleSweep(settings, live, ScheduleStore(store.engine))
        self.lost_messages = LostMessages(settings, live)
        self.orphans = OrphanSweep(settings, live)
        # The first round applies it, even on a machine booted < 10 min ago (monotonic clock).
        self._last_retention = -RETENTION_EVERY

    def run_once(self) -> dict[str, int]:
        # Each step stands alone: one that fails (SQL away, a Redis blip) is logged and the
        # others still run, so leases are recovered while PostgreSQL is down.
        steps: dict[str, Callable[[], int]] = {
            "persisted": self.persist_new,
            "sql_written": lambda: retry_pending(self.live, self.store),
            "recovered": self.recover_expired_leases,
            "orphans_restored": self.orphans.run_once,
            "lost_redispatched": self.lost_messages.run_once,
            "woken": self.wake_waiting,
            "dispatched": self.dispatch_due,
            "expired": self.expire_overdue,
            "webhooks": self.webhooks.run_once,
            "scheduled": self.schedules.run_once,
        }
        if time.monotonic() - self._last_retention > RETENTION_EVERY:
            steps["deleted"] = self.apply_retention
            self._last_retention = time.monotonic()
        return {name: _step(name, step) for name, step in steps.items()}

    def recover_expired_leases(self) -> int:
        now = time.time()
        ids = [text(v) for v in self.live.redis.zrangebyscore(keys.LEASES, "-inf", now, 0, 200)]
        done = 0
        for task_id in ids:
            fence = f"recovery:{uuid.uuid4().hex}"
            recovered = self.live.run(self.live.calls.recover(task_id, fence))
            action, attempts, queue = (text(v) for v in recovered)
            if action == "gone":
                continue
            finish = self.control.finish
            if action == "cancel":
                acted = finish(task_id, TaskState.CANCELLED, token=fence, detail="worker lost",
                               reason="cancelled by request").ended  # fmt: skip
            elif action == "lost_after_output":
                acted = finish(task_id, TaskState.FAILED, token=fence, detail="worker lost",
                               error=WORKER_LOST_AFTER_OUTPUT).ended  # fmt: skip
            elif int(attempts) >= self.settings.max_attempts:
                error = {
                    "type": "worker_lost",
                    "message": f"workers died during all {attempts} attempts of this task",
                }
                acted = finish(task_id, TaskState.FAILED, token=fence, error=error,
                               detail="worker lost").ended  # fmt: skip
            else:
                error = {"type": "worker_lost", "message": "the worker died before V1 answered"}
                # No delay: requeue.lua pushes its message at the head of its queue.
                acted = self.control.requeue(task_id, fence, 0.0, error, queue,
                                             "re-queued after its worker was lost")  # fmt: skip
            # Two instances may both fence the same lease; only the last fence acts on it.
            if acted:
                done += 1
                log.warning("task %s: lease expired (worker lost): %s", task_id, action)
        return done

    def persist_new(self) -> int:
        """Copy newly submitted tasks into the SQL store (the submit path writes Redis only)."""
        client = self.live.redis
        ids = [text(v) for v in client.zrange(keys.UNPERSISTED, 0, 499)]
        for task_id in ids:
            fields = self.live.get(task_id)
            if fields:
                # Insert only: the worker may have moved the row on since `fields` was read.
                mirror_live(self.store, task_id, fields, None, "submitted", insert_only=True)
        if ids:
            client.zrem(keys.UNPERSISTED, *ids)
        return len(ids)

    def wake_waiting(self) -> int:
        """Tasks waiting for a V1 slot while one is free (a reservation lapsed, a lease ran
        out): woken and published by the script. A slot never idles longer than a round."""
        return len(self.live.run(self.live.calls.wake_waiting()))

    def dispatch_due(self) -> int:
        """Publish retries whose delay passed, and tasks whose publisher died before it."""
        due = self.live.redis.zrangebyscore(keys.DISPATCH_DUE, "-inf", time.time(), 0, 500)
        return publish_due(self.live, [text(v) for v in due])

    def expire_overdue(self) -> int:
        now = time.time()
        ids = [text(v) for v in self.live.redis.zrangebyscore(keys.DEADLINES, "-inf", now, 0, 200)]
        done = 0
        reason = (
            f"still waiting when the absolute limit ({self.settings.absolute_time_limit}s "
            "from submission) ran out"
        )
        for task_id in ids:
            ended = False
            for state in (TaskState.QUEUED, TaskState.PAUSED):
                outcome = self.control.finish(task_id, TaskState.TIMED_OUT, reason=reason,
                                              only_from=state)  # fmt: skip
                if outcome.ended:
                    ended = True
                    break
                if outcome.code == 0:  # gone or already ended: stop tracking it
                    self.live.redis.zrem(keys.DEADLINES, task_id)
                    break
            done += ended
        return done

    def apply_retention(self) -> int:
        cutoff = datetime.now(UTC) - timedelta(days=self.settings.retention_days)
        self.webhooks.apply_retention(cutoff)
        return self.store.delete_finished_before(cutoff)


def _step(name: str, step: Callable[[], int]) -> int:
    try:
        return step()
    except Exception as exc:
        # The exception's type only: its text may quote a row (user text).
        log.warning("maintenance step %s failed (%s)", name, type(exc).__name__)
        return 0


def main() -> None:
    from taskrecord.redis_client import redis_client
    from taskrecord.store.db import create_store_engine
    from tasks.celery_app import create_celery_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = get_settings()
    client = redis_client(settings, socket_keepalive=True)
    maintenance = Maintenance(
        settings,
        LiveStore(client, settings),
        TaskStore(create_store_engine(settings.database_url)),
        create_celery_app(settings),
    )
    stop = threading.Event()

    def _stop(_sig: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("maintenance running (lease %ss)", settings.lease_seconds)
    while not stop.is_set():
        try:
            maintenance.run_once()
        except Exception:  # a Redis blip must not end housekeeping
            log.exception("maintenance round failed")
        stop.wait(TICK)


if __name__ == "__main__":
    main()
