"""What each tenant may do: quotas, its share of V1, its highest priority.

Tenants are configuration (`TENANTS`, JSON, or `TENANTS_FILE`, a JSON file of the same
shape): `{"<tenant>": {"name": ..., "weight": 2, "max_queued": 500, ...}}`. A tenant that
names none of these fields, or is not listed at all, gets the `TENANT_*` defaults. API keys
still map to tenants through `API_KEYS`.

The limits are enforced where the task record is written (`lua/create.lua`: unfinished
tasks, submit rate) and where V1 slots are handed out (`lua/claim.lua`, the prelude's
`release`: concurrent runs, weighted fair share), so they hold across any number of gateway
replicas and workers.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from taskrecord.settings import Settings


class TenantConfig(BaseModel):
    """One tenant's entry in `TENANTS` / `TENANTS_FILE`; unset fields take the defaults."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    weight: float | None = Field(None, gt=0, le=1000)
    max_queued: int | None = Field(None, ge=1)
    rate_per_second: float | None = Field(None, ge=0)
    burst: int | None = Field(None, ge=1)
    max_running: int | None = Field(None, ge=0)
    max_priority: int | None = Field(None, ge=0, le=10)
    daily_tokens: int | None = Field(None, ge=0)


class TenantPolicy(BaseModel):
    """A tenant's limits with every default resolved."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    name: str
    weight: float
    max_queued: int  # unfinished (queued, paused or running) tasks
    rate_per_second: float  # sustained submits; 0: no rate limit
    burst: int  # submits allowed at once
    max_running: int  # concurrent V1 runs; 0: only the shared V1 budget applies
    max_priority: int
    daily_tokens: int  # V1 tokens per UTC day (`taskrecord.usage`); 0: no budget


def load_tenants(settings: Settings) -> dict[str, TenantConfig]:
    """Parse `TENANTS_FILE` then `TENANTS` (the variable wins per tenant)."""
    raw: dict[str, object] = {}
    if settings.tenants_file:
        raw.update(json.loads(Path(settings.tenants_file).read_text()))
    raw.update(settings.tenants)
    return {name: TenantConfig.model_validate(entry) for name, entry in raw.items()}


class TenantPolicies:
    """Resolves (and caches) each tenant's policy from settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.configured = load_tenants(settings)
        self._cache: dict[str, TenantPolicy] = {}

    def __call__(self, tenant: str) -> TenantPolicy:
        found = self._cache.get(tenant)
        if found is None:
            found = self._cache[tenant] = self._resolve(tenant)
        return found

    def _resolve(self, tenant: str) -> TenantPolicy:
        s = self.settings
        entry = self.configured.get(tenant) or TenantConfig.model_validate({})
        if entry.max_priority is not None:
            ceiling = entry.max_priority
        elif tenant in s.priority_tenants:
            ceiling = 10
        elif s.tenant_max_priority is not None:
            ceiling = s.tenant_max_priority
        else:
            ceiling = s.priority_threshold
        return TenantPolicy(
            tenant=tenant,
            name=entry.name or tenant,
            weight=entry.weight if entry.weight is not None else s.tenant_weight,
            max_queued=entry.max_queued if entry.max_queued is not None else s.tenant_max_queued,
            rate_per_second=(
                entry.rate_per_second
                if entry.rate_per_second is not None
                else s.tenant_rate_per_second
            ),
            burst=entry.burst if entry.burst is not None else s.tenant_burst,
            max_running=(
                entry.max_running if entry.max_running is not None else s.tenant_max_running
            ),
            max_priority=ceiling,
            daily_tokens=(
                entry.daily_tokens if entry.daily_tokens is not None else s.tenant_daily_tokens
            ),
        )
