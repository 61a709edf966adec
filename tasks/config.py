"""Celery settings derived from our one Settings object (read by `celeryconfig.py`)."""

from __future__ import annotations

from typing import Any

from kombu.entity import Queue

from app.settings import Settings
from app.states import QUEUES


def celery_config(settings: Settings) -> dict[str, Any]:
    # The broker must never redeliver a live task on its own (crash recovery is by lease,
    # see tasks.maintenance), so its visibility timeout outlasts the absolute limit.
    visibility_timeout = settings.absolute_time_limit + 86_400
    return {
        "broker_url": settings.require_redis_url(),
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": visibility_timeout,
            "socket_keepalive": True,
            "health_check_interval": 25,
        },
        # V2 keeps results itself (Redis cache + SQL); no Celery result keys at all.
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_queues": [Queue(name) for name in QUEUES],  # type: ignore[no-untyped-call]
        "task_default_queue": "short",
        "task_create_missing_queues": False,
        # Late ack: a message stays in kombu's `unacked` hash until its task ends, so one
        # fetched by a worker that died before claiming the task is found and put back by
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
