"""What the gateway's lifespan builds and its routes use: typed, created once per process."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from celery import Celery

from app.control import TaskControl
from app.estimator import EstimateCache
from app.live import AsyncLiveStore
from app.metrics import GatewayMetrics
from app.settings import Settings
from app.store.repo import TaskStore


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
