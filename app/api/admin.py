"""/v1/admin: what operators need besides Flower: queue depths and pause/resume, the V1
budget and the breaker. Authenticated with ADMIN_API_KEYS."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request

from app.deps import Context, bearer_key
from app.errors import ApiError
from app.openapi_errors import Responses, errors
from app.overview import read_overview
from taskrecord import keys
from taskrecord.breaker import describe
from taskrecord.states import QUEUES

router = APIRouter(prefix="/v1/admin", tags=["operators"])


def require_admin(request: Request, ctx: Context) -> None:
    key = bearer_key(request.headers.get("authorization")) or ""
    offered = hashlib.sha256(key.encode()).digest()
    if not key or not any(
        hmac.compare_digest(offered, hashlib.sha256(k.encode()).digest())
        for k in ctx.settings.admin_api_keys
    ):
        raise ApiError(401, "unauthorized", "an operator key (ADMIN_API_KEYS) is required",
                       headers={"WWW-Authenticate": "Bearer"})  # fmt: skip


Admin = Annotated[None, Depends(require_admin)]


def _check_queue(queue: str) -> None:
    if queue not in QUEUES:
        raise ApiError(404, "not_found", f"no queue {queue!r}; queues: {', '.join(QUEUES)}")


_QUEUES_EXAMPLE = {
    "queues": {
        "priority": {"depth": 0, "paused": False},
        "short": {"depth": 12, "paused": False},
        "long": {"depth": 3, "paused": True},
    },
    "v1_budget": {"limit": 8, "in_use": 5, "waiting": 2},
    "breaker": {"state": "closed"},
}
_BREAKER_EXAMPLE = {"state": "open", "failures": "5", "until": "1700000030.5",
                    "opened_at": "1700000000.5", "times_opened": "1"}  # fmt: skip
_NO_QUEUE = errors((404, "No such queue.", {"not_found": "no queue 'x'; queues: "
                    "priority, short, long"}))  # fmt: skip


def _example(value: object) -> Responses:
    return {200: {"content": {"application/json": {"example": value}}}}


@router.get("/queues", responses=_example(_QUEUES_EXAMPLE))
async def queues(ctx: Context, _admin: Admin) -> dict[str, Any]:
    now = await read_overview(ctx)
    return {
        "queues": {q: {"depth": d, "paused": q in now.paused} for q, d in now.depths.items()},
        "v1_budget": {
            "limit": ctx.settings.v1_max_concurrency,
            "in_use": now.v1_in_use,
            "waiting": now.v1_waiting,
        },
        "breaker": now.breaker,
    }


@router.get("/breaker", responses=_example(_BREAKER_EXAMPLE))
async def breaker(ctx: Context, _admin: Admin) -> dict[str, str]:
    return describe(await ctx.redis.hgetall(keys.BREAKER))


@router.post(
    "/queues/{queue}/pause",
    responses={**_example({"queue": "short", "paused": True, "workers": 2}), **_NO_QUEUE},
)
async def pause_queue(queue: str, ctx: Context, _admin: Admin) -> dict[str, Any]:
    """Workers stop taking from the queue (see tasks.queue_control); tasks stay queued."""
    _check_queue(queue)
    await ctx.redis.hset(keys.PAUSED_QUEUES, queue, "1")
    replies = await anyio.to_thread.run_sync(
        lambda: ctx.celery.control.broadcast(
            "v2_pause_queue", arguments={"queue": queue}, reply=True, timeout=2.0
        )
    )
    return {"queue": queue, "paused": True, "workers": len(replies or [])}


@router.post(
    "/queues/{queue}/resume",
    responses={**_example({"queue": "short", "paused": False, "workers": 2}), **_NO_QUEUE},
)
async def resume_queue(queue: str, ctx: Context, _admin: Admin) -> dict[str, Any]:
    _check_queue(queue)
    await ctx.redis.hdel(keys.PAUSED_QUEUES, queue)
    replies = await anyio.to_thread.run_sync(
        lambda: ctx.celery.control.broadcast(
            "v2_resume_queue", arguments={"queue": queue}, reply=True, timeout=2.0
        )
    )
    return {"queue": queue, "paused": False, "workers": len(replies or [])}
