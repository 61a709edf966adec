"""GET /metrics: Prometheus text format (queue depths, V1 budget and breaker read on scrape,
submissions counted as they happen, V1 tokens per tenant). Carries no task content.

Not public: it answers only `Authorization: Bearer <METRICS_TOKEN>` (401 otherwise), which
Prometheus sends with `authorization: {credentials_file: ...}` in its scrape config. A token
rather than a second listening address: it holds wherever the gateway is reachable (several
replicas behind one Service or proxy, a shared host's loopback) with no extra port to
firewall, and it is how Flower's /metrics is closed too (its basic auth, see
deploy/flowerconfig.py). Under ENVIRONMENT=production the development default token is
refused like any wrong one, so an unset METRICS_TOKEN leaves /metrics closed, not open.
"""

from __future__ import annotations

import hashlib
import hmac

import anyio
from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.deps import Context, bearer_key
from app.errors import ApiError
from app.openapi_errors import errors
from app.overview import read_overview
from taskrecord.settings import DEV_METRICS_TOKEN

router = APIRouter(tags=["health"])

METRICS_UNAUTHORIZED = (
    "missing or wrong metrics token: send `Authorization: Bearer <METRICS_TOKEN>`"
)


def require_metrics_token(request: Request, ctx: Context) -> None:
    """Digests compared in constant time, like API keys (`app.deps.tenant_for_key`)."""
    offered = bearer_key(request.headers.get("authorization"))
    expected = ctx.settings.metrics_token.get_secret_value()
    if ctx.settings.environment == "production" and expected == DEV_METRICS_TOKEN:
        expected = ""  # a published token protects nothing: closed until METRICS_TOKEN is set
    if not (offered and expected) or not hmac.compare_digest(
        hashlib.sha256(offered.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    ):
        raise ApiError(401, "unauthorized", METRICS_UNAUTHORIZED,
                       headers={"WWW-Authenticate": "Bearer"})  # fmt: skip


@router.get(
    "/metrics",
    response_class=Response,
    dependencies=[Depends(require_metrics_token)],
    responses={
        200: {
            "description": "Prometheus text exposition format.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **errors((401, "No `Authorization: Bearer <METRICS_TOKEN>`, or another token.",
                  {"unauthorized": METRICS_UNAUTHORIZED})),
    },
)  # fmt: skip
async def metrics(ctx: Context) -> Response:
    now = await read_overview(ctx)
    m = ctx.metrics
    for queue, depth in now.depths.items():
        m.depth.labels(queue).set(depth)
    m.v1_in_use.set(now.v1_in_use)
    m.v1_waiting.set(now.v1_waiting)
    m.breaker_open.set(1 if now.breaker["state"] == "open" else 0)
    m.usage.totals = await anyio.to_thread.run_sync(ctx.store.usage.totals)
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
