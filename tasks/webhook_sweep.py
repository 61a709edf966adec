"""The maintenance side of completion webhooks: ended tasks become deliveries, and each
delivery's due attempt is handed to the workers.

The script that ends a task (finalize or cancel, whoever calls it: a worker, maintenance's
expiry or crash recovery, a cancel from the gateway, the CLI or a revoke) marks it in
`v2:webhooks-due` in the same step, so no end goes without its webhook. Here a marked task
becomes a delivery row (its id derived from the end, so doing it twice makes one row), and a
due delivery becomes a Celery message on the `webhooks` queue. Attempts wait in that sorted
set between tries, as task retries wait in `v2:dispatch-due`: not in a worker's memory (a
Celery countdown would be an unacked message that a dead worker keeps for the broker's
visibility timeout, 8 days here) and visible to every maintenance instance.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from celery import Celery

from taskrecord import keys
from taskrecord.live import LiveStore, text
from taskrecord.live_scripts import CLAIM_DUE
from taskrecord.settings import Settings
from taskrecord.store.deliveries import PENDING, DeliveryStore
from taskrecord.store.models import DeliveryRow
from taskrecord.webhooks import (
    EVENT_TYPES,
    WEBHOOK_QUEUE,
    WEBHOOK_TASK,
    build_payload,
    delivery_id_for,
    encode_body,
    facts_from_live,
)

log = logging.getLogger(__name__)
BATCH = 200


class WebhookSweep:
    def __init__(
        self, settings: Settings, live: LiveStore, deliveries: DeliveryStore, celery: Celery
    ) -> None:
        self.live = live
        self.deliveries = deliveries
        self.celery = celery
        # A published attempt is due again after this unless its worker reschedules or ends
        # it first (a lost message or a dead worker costs this much delay, not the delivery).
        self.claim_seconds = 3 * settings.webhook_timeout + 30.0
        self._claim = live.redis.register_script(CLAIM_DUE)

    def run_once(self) -> int:
        client = self.live.redis
        due = client.zrangebyscore(keys.WEBHOOKS_DUE, "-inf", time.time(), 0, BATCH)
        done = 0
        for member in (text(m) for m in due):
            kind, _, ident = member.partition(":")
            if kind == "t":
                self.make_delivery(ident)
            elif kind == "d":
                self.publish(ident)
            else:
                client.zrem(keys.WEBHOOKS_DUE, member)
            done += 1
        return done

    def make_delivery(self, task_id: str) -> str | None:
        """The delivery owed for the task's end (None when nothing is owed any more)."""
        client = self.live.redis
        fields = self.live.get(task_id)
        url = fields.get("webhook_url", "")
        state = fields.get("state", "")
        if state not in EVENT_TYPES or not url:
            # Gone (its record expired) or running again after a retry: that end's delivery
            # would describe a task that no longer is in that state.
            log.warning("task %s: no webhook made (task %s)", task_id, state or "gone")
            client.zrem(keys.WEBHOOKS_DUE, f"t:{task_id}")
            return None
        delivery_id = delivery_id_for(task_id, fields.get("finished_at", ""))
        now = datetime.now(UTC)
        self.deliveries.create(
            DeliveryRow(
                id=delivery_id,
                task_id=task_id,
                tenant=fields.get("tenant", ""),
                url=url,
                event_type=EVENT_TYPES[state],
                body=encode_body(build_payload(facts_from_live(fields))),
                trigger="ended",
                state=PENDING,
                attempts=0,
                created_at=now,
                next_attempt_at=now,
            )
        )
        pipe = client.pipeline(transaction=True)
        pipe.zadd(keys.WEBHOOKS_DUE, {f"d:{delivery_id}": now.timestamp()}, nx=True)
        pipe.zrem(keys.WEBHOOKS_DUE, f"t:{task_id}")
        pipe.execute()
        return delivery_id

    def publish(self, delivery_id: str) -> bool:
        """Hand the attempt to a worker; due again after the claim unless it is rescheduled."""
        now = time.time()
        claimed = self._claim(
            keys=[keys.WEBHOOKS_DUE], args=[f"d:{delivery_id}", now, now + self.claim_seconds]
        )
        if not int(claimed):
            return False
        # Only the delivery id travels: no URL, body or secret in Celery.
        self.celery.send_task(
            WEBHOOK_TASK,
            args=[delivery_id],
            queue=WEBHOOK_QUEUE,
            expires=self.claim_seconds,  # a copy still queued by then is dropped
        )
        return True

    def apply_retention(self, cutoff: datetime) -> int:
        return self.deliveries.delete_created_before(cutoff)
