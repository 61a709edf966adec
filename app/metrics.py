"""The gateway's Prometheus metrics (served by app.api.metrics)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from taskrecord.store.usage import UsageTotals


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
        # V1 tokens per tenant, from the SQL usage table (`taskrecord.store.usage`), which
        # every worker's success adds to: read on scrape, so each replica shows the same.
        self.usage = UsageCounters()
        self.registry.register(self.usage)


class UsageCounters(Collector):
    """`openclaw_tokens_total{tenant,kind}` and `openclaw_usage_tasks_total{tenant}`: the
    totals over every kept day, set by /metrics before each exposition. Every gateway
    replica reports the same global value: aggregate them with max(), not sum()."""

    def __init__(self) -> None:
        self.totals: dict[str, UsageTotals] = {}

    def collect(self) -> Iterator[Metric]:
        tokens = CounterMetricFamily(
            "openclaw_tokens", "V1 tokens used (V1's usage of succeeded tasks)",
            labels=["tenant", "kind"],
        )  # fmt: skip
        tasks = CounterMetricFamily(
            "openclaw_usage_tasks", "Succeeded tasks whose V1 usage is summed", labels=["tenant"]
        )
        for tenant, total in sorted(self.totals.items()):
            tokens.add_metric([tenant, "prompt"], total.prompt_tokens)
            tokens.add_metric([tenant, "completion"], total.completion_tokens)
            tokens.add_metric([tenant, "total"], total.total_tokens)
            tasks.add_metric([tenant], total.tasks)
        yield tokens
        yield tasks
