"""/healthz (process alive) and /readyz (Redis, SQL store and broker really answer; V1 is
reachable and takes our token)."""

from __future__ import annotations

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.deps import Context
from app.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(ctx: Context) -> JSONResponse:
    checks: dict[str, str] = {}

    try:
        with anyio.fail_after(2):
            await ctx.redis.ping()
        checks["redis"] = "ok"
    except Exception as exc:  # any failure means not ready; say which
        checks["redis"] = f"error: {type(exc).__name__}"

    def sql_ping() -> None:
        with ctx.store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def broker_ping() -> None:
        with ctx.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
            conn.default_channel.client.ping()

    for name, probe in (("sql", sql_ping), ("broker", broker_ping)):
        try:
            with anyio.fail_after(3):
                await anyio.to_thread.run_sync(probe, abandon_on_cancel=True)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"error: {type(exc).__name__}"
    checks["v1"] = await ctx.v1_probe.verdict()
    ok = all(value == "ok" for value in checks.values())
    health = Health(status="ok" if ok else "unavailable", checks=checks)
    return JSONResponse(health.model_dump(), status_code=200 if ok else 503)
