"""FastAPI dependencies as `Annotated` aliases."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Header, Request

from app.context import GatewayContext
from app.errors import ApiError
from app.schemas import AGENT_ID_PATTERN

UNAUTHORIZED = "missing or unknown API key: send `Authorization: Bearer <api key>`"


def get_context(request: Request) -> GatewayContext:
    ctx: GatewayContext = request.app.state.ctx
    return ctx


Context = Annotated[GatewayContext, Depends(get_context)]


def tenant_for_key(ctx: GatewayContext, api_key: str) -> str | None:
    """Compare digests in constant time so response timing does not reveal keys."""
    offered = hashlib.sha256(api_key.encode()).digest()
    found = None
    for key, tenant in ctx.settings.api_keys.items():
        if hmac.compare_digest(offered, hashlib.sha256(key.encode()).digest()):
            found = tenant
    return found


def bearer_key(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def get_tenant(request: Request, ctx: Context) -> str:
    key = bearer_key(request.headers.get("authorization"))
    tenant = tenant_for_key(ctx, key) if key else None
    if tenant is None:
        raise ApiError(401, "unauthorized", UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
    return tenant


Tenant = Annotated[str, Depends(get_tenant)]

# Headers of the routes that submit a task (POST /v1/tasks and the OpenAI-compatible ones).
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key")]
AgentHeader = Annotated[str | None, Header(alias="x-openclaw-agent-id", pattern=AGENT_ID_PATTERN)]
