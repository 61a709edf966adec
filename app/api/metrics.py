"""GET /metrics: Prometheus text format (queue depths, V1 budget and breaker read on scrape,
submissions counted as they happen). Carries no task content."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app import keys
from app.deps import Context
from app.live import budget_name, text
from app.states import QUEUES

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
async def metrics(ctx: Context) -> Response:
    budget = budget_name(ctx.settings.v1_url)
    pipe = ctx.redis.pipeline(transaction=False)
    for queue in QUEUES:
        pipe.llen(queue)
    pipe.zcard(f"{keys.PREFIX}:v1slots:{budget}")
    pipe.zcard(f"{keys.PREFIX}:v1wait:{budget}")
    pipe.hget(keys.BREAKER, "state")
    *depths, in_use, waiting, breaker = await pipe.execute()
    m = ctx.metrics
    for queue, depth in zip(QUEUES, depths, strict=True):
        m.depth.labels(queue).set(depth)
    m.v1_in_use.set(in_use)
    m.v1_waiting.set(waiting)
    m.breaker_open.set(1 if breaker is not None and text(breaker) == "open" else 0)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
