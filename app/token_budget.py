"""The daily token budget at submit: a tenant at or over its tokens of today (UTC) gets
429 `token_budget_exhausted` until midnight UTC.

Off unless the tenant has one (`daily_tokens` in TENANTS, or TENANT_DAILY_TOKENS): then one
primary-key read of the SQL usage table per submit, on a worker thread. Tasks already
accepted still run, so a tenant can end a day somewhat over its budget; the budget stops new
work, it does not cut runs short. If the SQL store cannot answer, the submit goes through
(the submit path must not depend on SQL; the budget is a soft limit).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import anyio
from sqlalchemy.exc import SQLAlchemyError

from app.context import GatewayContext
from app.errors import ApiError
from taskrecord.tenants import TenantPolicy
from taskrecord.usage import seconds_to_midnight

log = logging.getLogger(__name__)


async def check_token_budget(ctx: GatewayContext, policy: TenantPolicy) -> None:
    budget = policy.daily_tokens
    if not budget:
        return
    now = datetime.now(UTC)
    try:
        used = await anyio.to_thread.run_sync(ctx.store.usage.tokens_on, policy.tenant, now.date())
    except SQLAlchemyError as exc:
        log.warning("token budget not checked, the SQL store failed: %s", type(exc).__name__)
        return
    if used < budget:
        return
    wait = seconds_to_midnight(now)
    ctx.metrics.refused.labels("token_budget_exhausted").inc()
    raise ApiError(
        429, "token_budget_exhausted",
        f"this tenant has used {used} V1 tokens today (UTC), its daily budget is {budget} "
        f"(TENANT_DAILY_TOKENS); it refills at midnight UTC, in {wait} s",
        headers={"Retry-After": str(wait)}, daily_tokens=budget, used_tokens=used,
    )  # fmt: skip
