"""The Celery task that makes one attempt of one completion webhook delivery.

Maintenance (`tasks.webhook_sweep`) publishes `openclaw.webhook [delivery id]` on the
`webhooks` queue when an attempt is due; the worker checks the URL again (resolving it now:
DNS may have changed since submit), signs the stored body (Standard Webhooks), POSTs it to
the checked address with a timeout, records the attempt (time, status or error, duration;
never the response body) and either ends the delivery or puts its next attempt in
`v2:webhooks-due`. No worker ever sleeps between attempts.

Every worker consumes the `webhooks` queue besides the queues it was started with (added
as it starts, below), so no deployment can leave deliveries without a consumer.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import redis
from celery import shared_task
from celery.signals import celeryd_after_setup, worker_shutdown

from taskrecord import keys
from taskrecord.settings import Settings
from taskrecord.store.deliveries import DELIVERED, FAILED, PENDING, Attempt, DeliveryStore
from taskrecord.store.models import DeliveryRow
from taskrecord.store.repo import aware
from taskrecord.webhooks import (
    WEBHOOK_QUEUE,
    WEBHOOK_TASK,
    AllowList,
    RetrySchedule,
    WebhookUrlError,
    check_url,
    log_url,
    signed_headers,
)
from tasks.process import get_runtime
from tasks.runtime import WorkerRuntime

log = logging.getLogger(__name__)
USER_AGENT = "OpenClaw-V2-Webhooks/0.1"
_SENDING: ContextVar[bool] = ContextVar("webhook_sending", default=False)  # per greenlet


class _WebhookUrlsInHttpxLogs(logging.Filter):
    """httpx logs every request's whole URL at INFO; a webhook's userinfo, path or query
    may be a credential: while a webhook is sent, its log line shows the origin only."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if _SENDING.get() and isinstance(args, tuple) and len(args) > 1:
            record.args = (args[0], log_url(str(args[1])), *args[2:])
        return True


logging.getLogger("httpx").addFilter(_WebhookUrlsInHttpxLogs())


@celeryd_after_setup.connect  # type: ignore[untyped-decorator]
def _consume_webhooks(sender: Any = None, instance: Any = None, **_: Any) -> None:
    """Celery's hook for changing queues after `-Q` was applied."""
    if instance is not None:
        instance.app.amqp.queues.select_add(WEBHOOK_QUEUE)


@shared_task(name=WEBHOOK_TASK, bind=True, ignore_result=True)  # type: ignore[untyped-decorator]
def deliver_webhook(self: Any, delivery_id: str) -> str:
    return sender_for(get_runtime(self.app)).deliver(delivery_id)


@dataclass
class WebhookSender:
    settings: Settings
    redis: redis.Redis
    deliveries: DeliveryStore
    http: httpx.Client
    blocking: Any  # how SQL runs (gevent's thread pool in a worker)

    def __post_init__(self) -> None:
        s = self.settings
        self.allow = AllowList.parse(s.webhook_allowed_hosts)
        self.schedule = RetrySchedule(
            s.webhook_retry_base_delay, s.webhook_retry_max_delay, s.webhook_max_attempts,
            s.webhook_max_age,
        )  # fmt: skip

    def deliver(self, delivery_id: str) -> str:
        member = f"d:{delivery_id}"
        row = self.blocking(self.deliveries.get, delivery_id)
        if row is None or row.state != PENDING:
            self.redis.zrem(keys.WEBHOOKS_DUE, member)
            return "done"
        due = aware(row.next_attempt_at)
        if due is not None and due.timestamp() > time.time() + 1.0:
            return "not_due"  # a second copy of a message: the due set holds the next time
        created = aware(row.created_at)
        assert created is not None
        if self.schedule.exhausted(row.attempts, created.timestamp(), time.time()):
            self.blocking(self.deliveries.give_up, delivery_id, datetime.now(UTC))
            self.redis.zrem(keys.WEBHOOKS_DUE, member)
            return FAILED
        attempt = self.attempt(row)
        ok = attempt.status_code is not None and 200 <= attempt.status_code < 300
        next_ts = None
        if not ok:
            next_ts = self.schedule.next_attempt(row.attempts + 1, created.timestamp(), time.time())
        state = DELIVERED if ok else (PENDING if next_ts is not None else FAILED)
        next_at = datetime.fromtimestamp(next_ts, UTC) if next_ts is not None else None
        self.blocking(self.deliveries.record_attempt, delivery_id, attempt, state, next_at)
        if next_ts is not None:
            self.redis.zadd(keys.WEBHOOKS_DUE, {member: next_ts})
        else:
            self.redis.zrem(keys.WEBHOOKS_DUE, member)
        outcome = attempt.status_code if attempt.status_code is not None else attempt.error
        log.info("webhook %s (task %s) to %s, attempt %d: %s -> %s", delivery_id, row.task_id,
                 log_url(row.url), row.attempts + 1, outcome, state)  # fmt: skip
        return state

    def attempt(self, row: DeliveryRow) -> Attempt:
        at = datetime.now(UTC)
        started = time.monotonic()

        def done(status: int | None, error: str | None) -> Attempt:
            return Attempt(at, status, error, round((time.monotonic() - started) * 1000, 1))

        try:
            target = check_url(row.url, self.allow)  # resolves now; DNS may have changed
        except WebhookUrlError as exc:
            return done(None, f"refused before connecting: {exc}")
        headers = signed_headers(
            self.settings.webhook_secret.get_secret_value(), row.id, row.body, at
        )
        headers |= {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            # The name, while the connection goes to the address that was checked.
            "host": target.url.netloc.decode("ascii"),
        }
        sending = _SENDING.set(True)
        try:
            with self.http.stream(
                "POST", target.request_url(), content=row.body.encode(), headers=headers,
                extensions={"sni_hostname": target.host},
            ) as response:  # fmt: skip
                return done(response.status_code, None)  # the body is never read nor kept
        except httpx.TimeoutException:
            return done(None, f"timeout ({self.settings.webhook_timeout:g}s)")
        except httpx.HTTPError as exc:
            return done(None, describe(exc))
        finally:
            _SENDING.reset(sending)


def describe(exc: Exception) -> str:
    """The error's class, and its text unless that might quote the URL (userinfo, query)."""
    said = str(exc)
    if not said or any(mark in said for mark in ("://", "@", "?")):
        return type(exc).__name__
    return f"{type(exc).__name__}: {said[:200]}"


_lock = threading.Lock()
_senders: dict[int, WebhookSender] = {}


def sender_for(runtime: WorkerRuntime) -> WebhookSender:
    """One sender (one httpx client) per worker process."""
    with _lock:
        sender = _senders.get(os.getpid())
        if sender is None:
            settings = runtime.settings
            http = httpx.Client(
                timeout=httpx.Timeout(settings.webhook_timeout),
                follow_redirects=False,  # a redirect could lead past the address check
                trust_env=False,  # no proxy from the environment: it would connect instead
            )
            sender = WebhookSender(
                settings, runtime.redis, DeliveryStore(runtime.store.engine), http,
                runtime.blocking,
            )  # fmt: skip
            _senders[os.getpid()] = sender
        return sender


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _close_sender(**_: Any) -> None:
    with _lock:
        sender = _senders.pop(os.getpid(), None)
    if sender is not None:
        sender.http.close()
