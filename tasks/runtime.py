"""Per-worker-process resources, built once on first use and closed at shutdown.

One Redis client, one SQL engine, one V1 httpx client per process (arq's habit; Celery's
gevent pool runs every task in the worker process itself).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from celery import Celery

from taskrecord.breaker import Breaker
from taskrecord.control import TaskControl
from taskrecord.live import LiveStore
from taskrecord.redis_client import redis_client
from taskrecord.settings import Settings
from taskrecord.store.db import create_store_engine
from taskrecord.store.repo import TaskStore
from tasks.conversation import Conversations
from tasks.gevent_mode import gevent_patched
from tasks.retry_policy import RetryPolicy
from tasks.sql_writer import SqlWriter
from tasks.v1_client import V1Client

log = logging.getLogger(__name__)
T = TypeVar("T")


def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking C-level I/O (sqlite) on a real thread so the gevent hub keeps going."""
    if gevent_patched():
        import gevent

        result: T = gevent.get_hub().threadpool.apply(fn, args, kwargs)
        return result
    return fn(*args, **kwargs)


@dataclass
class WorkerRuntime:
    settings: Settings
    redis: redis.Redis
    live: LiveStore
    store: TaskStore
    v1: V1Client
    policy: RetryPolicy
    celery: Celery
    breaker: Breaker
    control: TaskControl  # finishes, re-queues and cancels tasks (SQL copies not waited for)
    conversations: Conversations  # which V1 session a turn runs in, and with what
    sql_writer: SqlWriter  # this process's SQL copies, in order, off the event loop
    supervisor: Any = field(default=None)  # tasks.supervision.Supervisor, set by tasks.process
    blocking = staticmethod(blocking)

    def close(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        self.v1.close()
        self.sql_writer.close()
        self.redis.close()
        self.store.engine.dispose()


def build_runtime(settings: Settings, celery: Celery) -> WorkerRuntime:
    client = redis_client(
        settings,
        socket_keepalive=True,
        health_check_interval=25,
        max_connections=2000,
    )
    live = LiveStore(client, settings)
    store = TaskStore(create_store_engine(settings.database_url))
    writer = SqlWriter(live, store)
    return WorkerRuntime(
        settings=settings,
        redis=client,
        live=live,
        store=store,
        v1=V1Client(
            settings.require_v1_url(),
            settings.v1_token.get_secret_value(),
            connect_timeout=settings.v1_connect_timeout,
            read_timeout=settings.v1_read_timeout,
        ),
        policy=RetryPolicy(
            max_attempts=settings.max_attempts,
            base_delay=settings.retry_base_delay,
            max_delay=settings.retry_max_delay,
        ),
        celery=celery,
        control=TaskControl(settings, live, store, celery, copier=writer),
        sql_writer=writer,
        conversations=Conversations(client, store, settings, blocking),
        breaker=Breaker(client, settings.breaker_threshold, settings.breaker_cooldown),
    )
