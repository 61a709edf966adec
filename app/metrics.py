"""The gateway's Prometheus metrics (served by app.api.metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class GatewayMetrics:
    """One registry per app (not the global one), so several apps can live in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.submitted = Counter("openclaw_tasks_submitted", "Tasks accepted", ["queue"],
                                 registry=self.registry)  # fmt: skip
        self.refused = Counter("openclaw_submissions_refused", "Submissions refused", ["reason"],
                               registry=self.registry)  # fmt: skip
        self.depth = Gauge("openclaw_queue_depth", "Messages waiting in a Celery queue",
                           ["queue"], registry=self.registry)  # fmt: skip
        self.v1_in_use = Gauge("openclaw_v1_slots_in_use", "V1 runs in flight",
                               registry=self.registry)  # fmt: skip
        self.v1_waiting = Gauge("openclaw_v1_waiting", "Tasks waiting for a V1 slot",
                                registry=self.registry)  # fmt: skip
        self.breaker_open = Gauge("openclaw_v1_breaker_open", "1 while V1's breaker is open",
                                  registry=self.registry)  # fmt: skip
