"""Per-worker-process resources, built once on first use and closed at shutdown.

One Redis client, one SQL engine, one V1 httpx client per process (arq's habit; Celery's
gevent pool runs every task in the worker process itself).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from app.breaker import Breaker
from app.control import TaskControl
from app.live import LiveStore
from app.settings import Settings, get_settings
from app.store.db import create_store_engine
from app.store.repo import TaskStore
from tasks.retry_policy import RetryPolicy
from tasks.v1_client import V1Client

log = logging.getLogger(__name__)
T = TypeVar("T")


def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking C-level I/O (sqlite) on a real thread so the gevent hub keeps going."""
    try:
        from gevent import monkey

        if monkey.is_module_patched("socket"):
            import gevent

            result: T = gevent.get_hub().threadpool.apply(fn, args, kwargs)
            return result
    except ImportError:  # pragma: no cover - gevent is a dependency
        pass
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
    control: TaskControl  # finishes, re-queues and cancels tasks (SQL on the thread pool)
    supervisor: Any = field(default=None)  # tasks.supervision.Supervisor, started lazily
    blocking = staticmethod(blocking)

    def close(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        self.v1.close()
        self.redis.close()
        self.store.engine.dispose()


def build_runtime(settings: Settings, celery: Celery) -> WorkerRuntime:
    client = redis.Redis.from_url(
        settings.require_redis_url(),
        socket_keepalive=True,
        health_check_interval=25,
        max_connections=2000,
    )
    live = LiveStore(client, settings)
    store = TaskStore(create_store_engine(settings.database_url))
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
        control=TaskControl(settings, live, store, celery, sql=blocking),
        breaker=Breaker(client, settings.breaker_threshold, settings.breaker_cooldown),
    )


_lock = threading.Lock()
_runtime: WorkerRuntime | None = None
_runtime_pid: int | None = None


def get_runtime(celery: Celery) -> WorkerRuntime:
    """The runtime of this process (rebuilt after a fork, never shared across processes)."""
    global _runtime, _runtime_pid
    with _lock:
        if _runtime is None or _runtime_pid != os.getpid():
            from tasks.supervision import Supervisor

            runtime = build_runtime(get_settings(), celery)
            runtime.supervisor = Supervisor(runtime)
            runtime.supervisor.start()
            _runtime, _runtime_pid = runtime, os.getpid()
            log.info("worker runtime ready (pid %s)", _runtime_pid)
        return _runtime


def close_runtime() -> None:
    global _runtime
    with _lock:
        if _runtime is not None and _runtime_pid == os.getpid():
            _runtime.close()
        _runtime = None


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_runtime(sender: Any = None, **_: Any) -> None:
    """Build the runtime as the worker starts, so its supervisor (revokes from the CLI and
    Flower, cancel messages) runs before the first task does."""
    get_runtime(sender.app)


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _close_runtime(**_: Any) -> None:
    close_runtime()
