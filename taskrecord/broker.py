"""The broker side of Celery, shared by everyone who publishes or steers: the run task's
name, Celery's settings derived from our one Settings object (read by `celeryconfig.py`),
a client app for publishing and remote control, and the redaction of published arguments.

The worker's app (`tasks.celery_app`) is this client plus the task modules.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import before_task_publish
from kombu.entity import Queue

from taskrecord.redis_client import broker_sentinel_options, broker_url
from taskrecord.settings import Settings
from taskrecord.states import QUEUES
from taskrecord.webhooks import WEBHOOK_QUEUE

RUN_TASK = "openclaw.run"

# kombu's transports with one Redis client object per channel, by broker URL scheme
# (taskrecord.broker_transport). Named, not imported: kombu imports one as it connects. An
# import here would load kombu's Redis transport, which keeps `select.select` as it finds
# it, before a gevent worker has patched it (its consuming loop then blocked the process).
TRANSPORTS = {
    "redis": "taskrecord.broker_transport:Transport",
    "sentinel": "taskrecord.broker_transport:SentinelTransport",
}


def celery_config(settings: Settings) -> dict[str, Any]:
    # The broker must never redeliver a live task on its own (crash recovery is by lease,
    # see tasks.maintenance), so its visibility timeout outlasts the absolute limit.
    visibility_timeout = settings.absolute_time_limit + 86_400
    url = broker_url(settings)
    return {
        # REDIS_URL, or its primary through Sentinel (kombu's `sentinel://` transport).
        "broker_url": url,
        # kombu's transport for that scheme, with one Redis client object per channel
        # (taskrecord.broker_transport); None (any other scheme): kombu's own.
        "broker_transport": TRANSPORTS.get(url.partition("://")[0]),
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout,
            "socket_keepalive": True,
            "health_check_interval": 25,
            # kombu's pool (10 by default) is shared by every greenlet of a gevent worker
            # acking and recording its messages; too small, a pop can outrun its record
            # (`MaxConnectionsError`). Connections open on demand only.
            "max_connections": settings.worker_concurrency + 50,
            **broker_sentinel_options(settings),
        },
        # V2 keeps results itself (Redis cache + SQL); no Celery result keys at all.
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # The run queues, and the completion webhooks' own (taskrecord.webhooks).
        "task_queues": [Queue(name) for name in (*QUEUES, WEBHOOK_QUEUE)],  # type: ignore[no-untyped-call]
        "task_default_queue": "short",
        "task_create_missing_queues": False,
        # Late ack: a message stays in kombu's `unacked` hash until its task is claimed
        # (claim.lua removes it; the lease covers the task from there), so one fetched by
        # a worker that died before claiming the task is found and put back by
        # tasks.maintenance (the visibility timeout above never fires in practice).
        # Fetch only for a free slot: a worker holds no messages beyond its running tasks.
        "task_acks_late": True,
        "worker_prefetch_multiplier": 1,
        "worker_disable_prefetch": True,
        "worker_concurrency": settings.worker_concurrency,
        # Flower reads these events.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "event_queue_expires": 60.0,
        "event_queue_ttl": 5.0,
        "control_queue_expires": 60.0,
        "control_queue_ttl": 300.0,
        "worker_hijack_root_logger": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
    }


def create_client_app(settings: Settings | None = None) -> Celery:
    """A Celery app that publishes and sends remote-control commands; it runs no tasks.

    Without settings, configuration comes from `celeryconfig` lazily (the celery CLI)."""
    app = Celery("openclaw", set_as_current=settings is None)
    if settings is None:
        app.config_from_object("celeryconfig")
    else:
        app.config_from_object(celery_config(settings))
    return app


@before_task_publish.connect  # type: ignore[untyped-decorator]
def _redact_arguments(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Flower and events show argsrepr/kwargsrepr: never user text or secrets there.

    Our own task carries only ids; anything else published through this app is redacted.
    """
    if headers is None:
        return
    if headers.get("task") != RUN_TASK:
        headers["argsrepr"] = "(redacted)"
    headers["kwargsrepr"] = "(redacted)"
