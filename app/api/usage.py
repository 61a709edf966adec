"""GET /v1/usage: this tenant's V1 tokens per UTC day (see `taskrecord.usage`)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import anyio
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from app.deps import Context, Tenant
from app.errors import ApiError
from app.openapi_errors import errors

router = APIRouter(prefix="/v1", tags=["usage"])

DEFAULT_DAYS = 30
FROM_DESCRIPTION = f"First UTC day (YYYY-MM-DD); default {DEFAULT_DAYS - 1} days before `to`."
# A day exactly as YYYY-MM-DD: pydantic's own date parsing would also take `0` (1970-01-01).
DAY = {"pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", "json_schema_extra": {"format": "date"}}


class UsageTotal(BaseModel):
    tasks: int = Field(description="Tasks that succeeded (V1 reports usage for those).")
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class UsageDay(BaseModel):
    date: date
    tasks: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class UsageOut(BaseModel):
    tenant: str
    from_: date = Field(alias="from")
    to: date
    daily_tokens: int | None = Field(
        description="This tenant's token budget per UTC day (null: none); at or over it a "
        "submit gets 429 `token_budget_exhausted` until midnight UTC."
    )
    days: list[UsageDay] = Field(description="The days of the range with usage, oldest first.")
    total: UsageTotal = Field(description="The sum over the range.")


def _day(name: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        problem = "is not a date (YYYY-MM-DD)"
        raise ApiError(422, "invalid_request", f"{name}: {problem}",
                       details=[{"field": name, "problem": problem}]) from None  # fmt: skip


@router.get(
    "/usage",
    response_model=UsageOut,
    responses=errors((422, "`from` or `to` is not a date (YYYY-MM-DD).")),
)
async def usage(
    ctx: Context,
    tenant: Tenant,
    from_: Annotated[str | None, Query(alias="from", description=FROM_DESCRIPTION, **DAY)] = None,
    to: Annotated[
        str | None,
        Query(description="Last UTC day (YYYY-MM-DD), included; default today.", **DAY),
    ] = None,
) -> UsageOut:
    """Tokens V1 reported for this tenant's succeeded tasks, by the UTC day they finished.
    A `from` after `to` is an empty range."""
    last = _day("to", to) or datetime.now(UTC).date()
    # Near year 1 the default start would fall before date.min.
    start = max(last, date.min + timedelta(DEFAULT_DAYS)) - timedelta(DEFAULT_DAYS - 1)
    first = _day("from", from_) or start
    rows = await anyio.to_thread.run_sync(ctx.store.usage.days, tenant, first, last)
    days = [
        UsageDay(date=row.day, tasks=row.tasks, prompt_tokens=row.prompt_tokens,
                 completion_tokens=row.completion_tokens, total_tokens=row.total_tokens)
        for row in rows
    ]  # fmt: skip
    total = UsageTotal(
        tasks=sum(d.tasks for d in days),
        prompt_tokens=sum(d.prompt_tokens for d in days),
        completion_tokens=sum(d.completion_tokens for d in days),
        total_tokens=sum(d.total_tokens for d in days),
    )
    budget = ctx.tenants(tenant).daily_tokens
    return UsageOut.model_validate({
        "tenant": tenant, "from": first, "to": last, "daily_tokens": budget or None,
        "days": days, "total": total,
    })  # fmt: skip
