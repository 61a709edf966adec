"""Worker recycling: memory guard and lifetime. Stop taking work, finish what is held, exit.

The process supervisor (supervisord under `make run`, the orchestrator in deploy/) starts a
fresh worker. Celery's own max_memory_per_child is prefork-only.

A lifetime recycle never leaves a queue without a consumer: the worker advertises itself
per queue (`tasks.consumers`) and starts draining only while another live, non-draining
worker consumes each of its queues, one recycling worker per queue at a time. A lone worker
past its lifetime keeps serving until a peer shows up. Memory is a hard limit: above
`WORKER_MAX_MEMORY_MB` a worker drains at once, peer or not; from `SOFT_MEMORY` of it on it
recycles early, the lifetime way, whenever a peer can take over (which costs nothing).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

import redis
from celery.worker import state as worker_state

from tasks import queue_control
from tasks.consumers import ConsumerRegistry
from tasks.runtime import WorkerRuntime
from tasks.watchers import PeriodicWatcher

log = logging.getLogger(__name__)

ADVERTISE_TTL = 6.0  # seconds an advertisement (or a recycling lock) lasts unrefreshed
ADVERTISE_EVERY = 1.0
CHECK_EVERY = 2.0  # seconds between two looks at memory and age
SOFT_MEMORY = 0.9  # fraction of WORKER_MAX_MEMORY_MB from which a peer-covered recycle starts


def shutting_down() -> bool:
    """Celery's warm or cold shutdown has begun (its flags hold an exit code, 0 included)."""
    flags = (worker_state.should_stop, worker_state.should_terminate)
    return any(flag is not None and flag is not False for flag in flags)


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1_048_576


class Recycler(PeriodicWatcher):
    name = "recycler"

    def __init__(self, runtime: WorkerRuntime) -> None:
        super().__init__()
        self.runtime = runtime
        settings = runtime.settings
        self.max_mb = settings.worker_max_memory_mb
        self.max_lifetime = settings.worker_max_lifetime
        self.started = time.monotonic()
        self.registry: ConsumerRegistry | None = None  # once the consumer is ready
        self.draining = False
        self.exiting = False  # drained and SIGTERM sent, or stopping for another reason
        self._last_check = time.monotonic()  # first look after one interval
        self._last_advert = 0.0
        self._waiting_for: str = ""  # why a due recycle waits (logged once per reason)

    def round(self) -> None:
        consumer = queue_control.CONSUMER
        if consumer is None or self.exiting:
            return
        registry = self._registry(consumer)
        if shutting_down():
            # Shutting down (SIGTERM from supervisord, Ctrl+C): no longer a consumer.
            self.exiting = True
            registry.leave()
            return
        if self.draining:
            self._drain_round(consumer, registry)
            return
        now = time.monotonic()
        if now - self._last_advert >= ADVERTISE_EVERY:
            registry.advertise()
            self._last_advert = now
        if now - self._last_check >= CHECK_EVERY:
            self._last_check = now
            self._check(consumer, registry)

    def close(self) -> None:
        if self.registry is not None:
            self.registry.leave()

    def _registry(self, consumer: Any) -> ConsumerRegistry:
        if self.registry is None:
            name = str(consumer.hostname or f"worker-{os.getpid()}")
            queues = sorted(queue_control.HOME_QUEUES)
            self.registry = ConsumerRegistry(self.runtime.redis, name, queues, ADVERTISE_TTL)
        return self.registry

    def _check(self, consumer: Any, registry: ConsumerRegistry) -> None:
        used = rss_mb()
        if used > self.max_mb:
            # A hard limit: drain now, even if this leaves a queue without a consumer (or
            # Redis cannot be told).
            try:
                registry.begin_recycle(force=True)
            except redis.RedisError as exc:
                log.warning("could not withdraw this worker's advertisement: %s", exc)
            self._drain(consumer, f"memory {used:.0f} MB above {self.max_mb} MB")
            return
        if self.max_lifetime and time.monotonic() - self.started > self.max_lifetime:
            reason = f"lifetime {self.max_lifetime:.0f}s reached"
        elif used > SOFT_MEMORY * self.max_mb:
            reason = f"memory {used:.0f} MB near the {self.max_mb} MB limit"
        else:
            return
        verdict = registry.begin_recycle()
        if verdict.allowed:
            self._drain(consumer, reason)
        elif verdict.why != self._waiting_for:
            self._waiting_for = verdict.why
            log.warning("%s, but %s: keeps taking tasks until another worker can take over",
                        reason, verdict.explain())  # fmt: skip

    def _drain(self, consumer: Any, reason: str) -> None:
        log.warning("%s: no longer taking tasks, finishing the ones held", reason)
        self.draining = True
        self._stop_consuming(consumer)

    def _drain_round(self, consumer: Any, registry: ConsumerRegistry) -> None:
        registry.hold()
        self._stop_consuming(consumer)  # again: an operator's queue resume may have re-added one
        if worker_state.active_requests or worker_state.reserved_requests:
            return
        log.warning("worker drained: exiting to be replaced")
        self.exiting = True
        registry.leave()
        os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown, once

    @staticmethod
    def _stop_consuming(consumer: Any) -> None:
        if consumer.task_consumer is None:
            return
        for queue in [q.name for q in consumer.task_consumer.queues]:
            consumer.cancel_task_queue(queue)
