"""Baseline for submit latency: a FastAPI `POST /v1/tasks` that does one LPUSH to Redis.

It parses the same JSON body with pydantic, checks the bearer key with a dict lookup,
LPUSHes `{id, message}` to one list and answers 202. Served exactly like the gateway
(`app/__main__.py`: `uvicorn.run(app, host, port, access_log=False, log_level="info")`).

    python -m bench.baseline_app --port 8100 --redis-url redis://127.0.0.1:6379/9
"""

from __future__ import annotations

import argparse
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI, Header, HTTPException
from pydantic import BaseModel, ConfigDict, Field

from testbed import API_KEY

QUEUE = "baseline:queue"


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str = Field(min_length=1)
    priority: int = Field(5, ge=0, le=10)
    estimated_seconds: float | None = Field(None, gt=0)
    session_id: str | None = None


def create_app(redis_url: str) -> FastAPI:
    keys = {API_KEY: "alpha"}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.redis = aioredis.Redis.from_url(redis_url, max_connections=1000)
        yield
        await app.state.redis.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/tasks", status_code=202)
    async def create_task(
        body: Body, authorization: Annotated[str | None, Header()] = None
    ) -> dict[str, object]:
        scheme, _, key = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or key not in keys:
            raise HTTPException(401, "bad key")
        task_id = str(uuid.uuid4())
        await app.state.redis.lpush(QUEUE, json.dumps({"id": task_id, "message": body.message}))
        return {"task_id": task_id, "state": "queued", "queue": "short", "priority": body.priority}

    @app.get("/readyz")
    async def readyz() -> dict[str, bool]:
        return {"ok": bool(await app.state.redis.ping())}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.redis_url),
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="info",
    )


if __name__ == "__main__":
    main()
