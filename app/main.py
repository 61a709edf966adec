"""The gateway application factory: `uvicorn app.main:create_app --factory`."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from celery import Celery
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app.api import (
    admin,
    dead_letters,
    deliveries,
    events,
    health,
    metrics,
    openai_chat,
    openai_responses,
    schedules,
    tasks,
    usage,
    ws,
)
from app.bridge import EventBridge
from app.context import GatewayContext
from app.errors import install_error_handlers
from app.guard import RequestGuard
from app.metrics import GatewayMetrics
from app.openapi import install_openapi
from app.schemas import configure_limits
from app.submit_fast import install_submit_lane
from app.v1_probe import V1Probe
from taskrecord.broker import create_client_app
from taskrecord.control import TaskControl
from taskrecord.estimator import EstimateCache
from taskrecord.live import AsyncLiveStore, LiveStore
from taskrecord.redis_client import async_redis_client, redis_client
from taskrecord.settings import Settings, get_settings
from taskrecord.store.db import create_store_engine
from taskrecord.store.repo import TaskStore
from taskrecord.tenants import TenantPolicies

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = async_redis_client(
            settings,
            socket_keepalive=True,
            health_check_interval=25,
            socket_connect_timeout=3,
            max_connections=1000,
        )
        engine = await anyio.to_thread.run_sync(create_store_engine, settings.database_url)
        celery = create_client_app(settings)
        store = TaskStore(engine)
        # Steering calls (cancel, pause, retry...) are rare: they share the sync code path
        # with the celery CLI and run on worker threads.
        sync_client = redis_client(settings, socket_timeout=10)
        app.state.ctx = GatewayContext(
            settings=settings,
            redis=client,
            live=AsyncLiveStore(client, settings),
            store=store,
            celery=celery,
            control=TaskControl(settings, LiveStore(sync_client, settings), store, celery),
            metrics=GatewayMetrics(),
            estimates=EstimateCache(client),
            v1_probe=V1Probe(settings),
            tenants=TenantPolicies(settings),
        )
        await anyio.to_thread.run_sync(_warm_publisher, celery)
        app.state.bridge = EventBridge(client)
        await app.state.bridge.start()
        # Long-lived objects built so far never need collecting: keep them out of the
        # garbage collector's full passes (fewer multi-millisecond pauses under load).
        gc.freeze()
        log.info("gateway ready")
        try:
            yield
        finally:
            await app.state.bridge.stop()
            await client.aclose()
            sync_client.close()
            engine.dispose()
            celery.close()

    # /docs loads Swagger UI from the installed fastapi-offline package, not from a CDN: it
    # works with no internet. No /redoc: ReDoc's bundle always loads a logo from its CDN.
    app = FastAPIOffline(
        title="OpenClaw V2 gateway",
        version="0.1.0",
        lifespan=lifespan,
        description="Asynchronous task gateway in front of OpenClaw V1.",
        redoc_url=None,
        swagger_ui_parameters={"validatorUrl": None},  # no call to swagger.io
        # No OpenTelemetry here (metrics are Prometheus'): without this FastAPI asks the
        # global OTel providers on every request, 3 % of the gateway's CPU per submit.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_openapi(app, settings)
    install_error_handlers(app)
    # Outside the routes, before any body is read: unknown keys (401) and big bodies (413).
    app.add_middleware(RequestGuard, settings=settings)
    configure_limits(settings)
    app.include_router(health.router)
    app.include_router(dead_letters.router)  # POST /v1/tasks/retry (bulk, by filter)
    app.include_router(tasks.router)
    app.include_router(usage.router)
    app.include_router(schedules.router)
    app.include_router(events.router)
    app.include_router(ws.router)
    app.include_router(admin.router)
    app.include_router(metrics.router)
    app.include_router(deliveries.router)
    app.include_router(openai_responses.router)
    app.include_router(openai_chat.router)
    # `POST /v1/tasks` without the per-request cost of routing, dependencies and layers.
    install_submit_lane(app, settings)
    return app


def _warm_publisher(celery: Celery) -> None:
    """Open the publishing connection now, not on the first submit (tens of ms)."""
    try:
        with celery.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=1)
    except Exception as exc:  # not fatal: /readyz reports the broker; submits retry it
        log.warning("broker not reachable at start: %s", type(exc).__name__)
