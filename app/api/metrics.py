"""GET /metrics: Prometheus text format (queue depths, V1 budget and breaker read on scrape,
submissions counted as they happen). Carries no task content."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.deps import Context
from app.overview import read_overview

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
async def metrics(ctx: Context) -> Response:
    now = await read_overview(ctx)
    m = ctx.metrics
    for queue, depth in now.depths.items():
        m.depth.labels(queue).set(depth)
    m.v1_in_use.set(now.v1_in_use)
    m.v1_waiting.set(now.v1_waiting)
    m.breaker_open.set(1 if now.breaker["state"] == "open" else 0)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
