"""What the gateway's lifespan builds and its routes use: typed, created once per process."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from celery import Celery

from app.metrics import GatewayMetrics
from app.v1_probe import V1Probe
from taskrecord.control import TaskControl
from taskrecord.estimator import EstimateCache
from taskrecord.live import AsyncLiveStore
from taskrecord.settings import Settings
from taskrecord.store.repo import TaskStore
from taskrecord.tenants import TenantPolicies


@dataclass
class GatewayContext:
    settings: Settings
    redis: aioredis.Redis
    live: AsyncLiveStore
    store: TaskStore
    celery: Celery
    control: TaskControl  # synchronous: call it on a worker thread
    metrics: GatewayMetrics
    estimates: EstimateCache
    v1_probe: V1Probe
    tenants: TenantPolicies  # each tenant's quotas, weight and highest priority
