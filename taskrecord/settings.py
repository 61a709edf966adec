"""All configuration in one pydantic-settings object, built by `get_settings()`.

Every variable is documented here once (the README's table is generated from the same
descriptions). Nothing reads the environment at import time: entry points call
`get_settings()` and pass the object on.
"""

from __future__ import annotations

import base64
import json
import re
from functools import cached_property
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from taskrecord.settings_connections import DEV_V1_TOKEN, ConnectionSettings

DEV_API_KEY = "dev-key-change-me"
# Tenant names are parts of Redis key names: no separators in them.
TENANT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
DEV_SESSION_SECRET = "dev-session-secret-change-me"
DEV_ADMIN_KEY = "dev-admin-key-change-me"
DEV_METRICS_TOKEN = "dev-metrics-token-change-me"
DEV_WEBHOOK_SECRET = "whsec_b3BlbmNsYXctZGV2LXdlYmhvb2stc2VjcmV0LWNoYW5nZS1tZQ=="


class Settings(ConnectionSettings):
    """Settings for the gateway, the workers, the launcher and the simulator (the
    connections to Redis, SQL and V1 first: `ConnectionSettings`)."""

    # hide_input_in_errors: a refused setting's error must not print secrets (the inputs).
    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", frozen=True, hide_input_in_errors=True
    )

    api_keys: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: {DEV_API_KEY: "dev"},
        description="API keys and the tenant each belongs to, as `key:tenant,key2:tenant2`.",
    )
    admin_api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: [DEV_ADMIN_KEY],
        description="Operator keys for /v1/admin (queue pause/resume, breaker), comma-separated.",
    )
    max_message_chars: int = Field(
        100_000,
        description="Most characters in a task's text: `message`, or all `messages` together.",
    )
    max_messages: int = Field(
        200, ge=1, description="Most entries in a task's `messages` list (more: 413)."
    )
    max_request_bytes: int = Field(
        2_097_152,
        ge=1024,
        description="Largest request body (bytes; more: 413, refused before it is read): room "
        "for MAX_MESSAGE_CHARS characters even written as JSON `\\u` escapes (12 bytes each).",
    )
    tenant_max_priority: int | None = Field(
        None,
        ge=0,
        le=10,
        description="Highest priority a tenant may give its tasks (more: 422). Unset: "
        "PRIORITY_THRESHOLD, so only PRIORITY_TENANTS reach the `priority` queue.",
    )
    priority_tenants: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Tenants allowed priorities up to 10, comma-separated.",
    )
    queue_limit: int = Field(10_000, description="Most queued tasks per queue before 429.")
    tenants: Annotated[dict[str, dict[str, object]], NoDecode] = Field(
        default_factory=dict,
        description='Per-tenant limits as JSON: `{"acme": {"name": "Acme", "weight": 2, '
        '"max_queued": 500, "rate_per_second": 5, "burst": 20, "max_running": 4, '
        '"max_priority": 10, "daily_tokens": 1000000}}`; unset fields take the TENANT_* '
        "defaults.",
    )
    tenants_file: str | None = Field(
        None, description="A JSON file of the same shape as TENANTS (TENANTS wins per tenant)."
    )
    tenant_max_queued: int = Field(
        2_000,
        ge=1,
        description="Default most unfinished (queued, paused, running) tasks per tenant "
        "(more: 429 `tenant_queue_full`).",
    )
    tenant_rate_per_second: float = Field(
        100.0,
        ge=0,
        description="Default sustained submits per second per tenant, a token bucket "
        "(more: 429 `rate_limited`); 0: no limit.",
    )
    tenant_burst: int = Field(
        1_000, ge=1, description="Default submits a tenant may make at once (the bucket's size)."
    )
    tenant_max_running: int = Field(
        0,
        ge=0,
        description="Default most concurrent V1 runs per tenant; 0: only V1_MAX_CONCURRENCY.",
    )
    tenant_daily_tokens: int = Field(
        0,
        ge=0,
        description="Default V1 tokens (V1's `usage.total_tokens`) a tenant may use per UTC "
        "day; at or over it a submit gets 429 `token_budget_exhausted` until midnight UTC. "
        "0: no budget.",
    )
    fair_share: bool = Field(
        True,
        description="Hand free V1 slots to waiting tenants by weighted fair share (off: one "
        "shared line by priority then age, the FIFO baseline of `bench.fairness`).",
    )
    tenant_weight: float = Field(
        1.0,
        gt=0,
        description="Default weight of a tenant in the fair share of V1 slots among waiting "
        "tenants.",
    )
    tenant_max_schedules: int = Field(
        100,
        ge=0,
        description="Most recurring schedules per tenant (more: 409 `schedule_limit_reached`).",
    )
    schedule_min_interval: float = Field(
        60.0,
        gt=0,
        description="Shortest time (s) allowed between two firings of one schedule; a cron "
        "expression that fires more often is refused (422 `schedule_too_frequent`).",
    )
    short_time_limit: int = Field(300, description="Run-time limit of the short tier (s).")
    long_time_limit: int = Field(86_400, description="Run-time limit of the long tier (s).")
    absolute_time_limit: int = Field(
        7 * 86_400, description="Limit from submission to end, queued time included (s)."
    )
    stall_seconds: float = Field(
        600.0,
        ge=0,
        description="A running task with no output from V1 for this long (s) ends `failed` "
        "with type `stalled` (V1 call closed, partial output kept); 0: never.",
    )
    short_threshold_seconds: float = Field(
        60.0, description="Tasks expected to take less than this go to the `short` queue."
    )
    priority_threshold: int = Field(8, description="Priority above this goes to `priority`.")
    result_ttl: int = Field(86_400, description="Seconds finished results stay cached in Redis.")
    event_log_maxlen: int = Field(5_000, description="Most events kept per task in Redis.")
    retention_days: int = Field(30, description="Days finished tasks stay in the SQL store.")
    v1_session_secret: SecretStr = Field(
        SecretStr(DEV_SESSION_SECRET),
        description="Key of the HMAC that turns (tenant, session_id) into V1's session name, "
        "so no tenant can reach or guess another tenant's V1 conversation.",
    )
    v1_probe_interval: float = Field(
        15.0,
        gt=0,
        description="Seconds /readyz reuses its last answer on V1's reachability and auth.",
    )
    v1_history_max_chars: int = Field(
        100_000,
        ge=0,
        description="Most characters of earlier turns sent to seed a fresh V1 session when a "
        "message V1 already received must be sent again (retries).",
    )
    max_attempts: int = Field(4, description="Attempts per task before it fails for good.")
    retry_base_delay: float = Field(1.0, description="First automatic retry delay (s).")
    retry_max_delay: float = Field(60.0, description="Cap of the retry delay (s).")
    lease_seconds: float = Field(
        15.0, description="A running task's lease; a dead worker's task is re-run after it."
    )
    orphan_seconds: float = Field(
        20.0,
        description="A message fetched but not claimed for this long belonged to a dead "
        "worker: maintenance puts it back in its queue.",
    )
    v1_max_concurrency: int = Field(
        8, description="Most concurrent V1 runs across all workers (V1's capacity budget)."
    )
    breaker_threshold: int = Field(
        5, description="Consecutive V1 failures (unreachable, 5xx, 408, 429) that open the breaker."
    )
    breaker_cooldown: float = Field(
        30.0, description="Seconds the breaker stays open before one probe task is let through."
    )
    worker_max_memory_mb: int = Field(
        500,
        description="A worker above this RSS stops taking work, finishes, exits and is replaced.",
    )
    worker_max_lifetime: float = Field(
        0.0,
        description="Seconds after which a worker recycles itself the same graceful way "
        "(0: never; `make run` uses 300 for short and priority workers, 3600 for long).",
    )
    worker_concurrency: int = Field(50, description="Most tasks per worker process.")
    worker_nice: int = Field(
        19,
        ge=0,
        le=19,
        description="CPU niceness a worker process takes at start: on a machine shared with "
        "the gateway, the gateway's answers come before workers' CPU (0: unchanged). A worker "
        "leading its own session nices its session's autogroup too.",
    )
    autoscale: bool = Field(True, description="`make run` scales short/long worker processes.")
    autoscale_short_min: int = Field(5, ge=1, description="Fewest `short` worker processes.")
    autoscale_short_max: int = Field(20, ge=1, description="Most `short` worker processes.")
    autoscale_long_min: int = Field(2, ge=1, description="Fewest `long` worker processes.")
    autoscale_long_max: int = Field(10, ge=1, description="Most `long` worker processes.")
    autoscale_interval: float = Field(2.0, gt=0, description="Seconds between two scaling looks.")
    autoscale_cooldown: float = Field(60.0, gt=0, description="Seconds of low load before a drain.")
    progress_interval: float = Field(
        0.1, description="Minimum seconds between two progress events of one task."
    )
    stream_buffer: int = Field(
        1_000, description="Events buffered per WebSocket/SSE client before it is told to resume."
    )
    flower_user: str = Field("admin", description="Flower basic-auth user.")
    flower_password: SecretStr = Field(
        SecretStr("admin-change-me"), description="Flower basic-auth password."
    )
    metrics_token: SecretStr = Field(
        SecretStr(DEV_METRICS_TOKEN),
        description="Bearer token Prometheus sends to the gateway's /metrics (without it: "
        "401). With ENVIRONMENT=production the development default opens nothing: set one.",
    )
    gateway_host: str = Field("127.0.0.1", description="Address the gateway listens on.")
    gateway_port: int = Field(8000, description="Port of the gateway (`make run`).")
    gateway_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Gateway processes on this host, sharing GATEWAY_PORT (uvicorn workers): "
        "about one per core for more submits/s. Each has its own event bridge, and its own "
        "/metrics counters (Prometheus sees the process that answered the scrape).",
    )
    flower_port: int = Field(5555, description="Port of Flower (`make run`).")
    simulator_port: int = Field(18790, description="Port of the V1 simulator (`make run`).")
    simulator_capacity: int = Field(
        8, description="Concurrent runs the simulator serves; more wait (like V1's maxConcurrent)."
    )
    var_dir: str = Field("./var", description="Data directory (Valkey AOF, SQLite, logs).")
    webhook_secret: SecretStr = Field(
        SecretStr(DEV_WEBHOOK_SECRET),
        description="Key that signs completion webhooks (Standard Webhooks): `whsec_` and the "
        "base64 of 24-64 random bytes.",
    )
    webhook_default_urls: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict,
        description="Completion webhook of each tenant's tasks that name no `webhook_url`, as "
        "`tenant=url,tenant2=url2`.",
    )
    webhook_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts and CIDRs (comma-separated) that webhooks may reach although they "
        "are loopback, private, link-local or reserved; every other such address is refused.",
    )
    webhook_max_age: float = Field(
        86_400.0, gt=0, description="Seconds a webhook delivery is retried before it fails."
    )
    webhook_max_attempts: int = Field(
        40, ge=1, description="Most attempts of one webhook delivery."
    )
    webhook_timeout: float = Field(
        10.0,
        gt=0,
        description="Timeout (s) of each step of a webhook attempt (connect, send, await the "
        "answer), and the longest a submit waits to resolve a webhook's host.",
    )
    webhook_retry_base_delay: float = Field(
        5.0, gt=0, description="First webhook retry delay (s); it doubles per attempt."
    )
    webhook_retry_max_delay: float = Field(
        3_600.0, gt=0, description="Cap of the webhook retry delay (s)."
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: object) -> object:
        if isinstance(value, str):
            pairs: dict[str, str] = {}
            for item in filter(None, (part.strip() for part in value.split(","))):
                key, sep, tenant = item.partition(":")
                if not sep or not key or not tenant:
                    raise ValueError("API_KEYS must look like `key:tenant,key2:tenant2`")
                if not TENANT_NAME.fullmatch(tenant):
                    raise ValueError(
                        f"API_KEYS: tenant names use letters, digits, `_`, `.` and `-` only "
                        f"(got {tenant!r})"
                    )
                pairs[key] = tenant
            return pairs
        return value

    @field_validator("tenants", mode="before")
    @classmethod
    def _parse_tenants(cls, value: object) -> object:
        if isinstance(value, str):
            parsed = json.loads(value) if value.strip() else {}
            if not isinstance(parsed, dict):
                raise ValueError("TENANTS must be a JSON object of tenant -> limits")
            return parsed
        return value

    @field_validator("webhook_default_urls", mode="before")
    @classmethod
    def _parse_webhook_defaults(cls, value: object) -> object:
        if isinstance(value, str):
            pairs: dict[str, str] = {}
            for item in filter(None, (part.strip() for part in value.split(","))):
                tenant, sep, url = item.partition("=")
                if not sep or not url.lower().startswith(("http://", "https://")):
                    raise ValueError(
                        "WEBHOOK_DEFAULT_URLS must look like `tenant=https://...,tenant2=...`"
                    )
                pairs[tenant.strip()] = url.strip()
            return pairs
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        try:
            raw = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except ValueError:
            raw = b""
        if not secret.startswith("whsec_") or not 24 <= len(raw) <= 64:
            raise ValueError("WEBHOOK_SECRET must be `whsec_` and the base64 of 24-64 bytes")
        return value

    @field_validator(
        "v1_agents", "admin_api_keys", "priority_tenants", "webhook_allowed_hosts", mode="before"
    )
    @classmethod
    def _parse_agents(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> Settings:
        if self.environment == "production":
            if DEV_API_KEY in self.api_keys:
                raise ValueError("ENVIRONMENT=production: set API_KEYS to real keys")
            if DEV_ADMIN_KEY in self.admin_api_keys:
                raise ValueError("ENVIRONMENT=production: set ADMIN_API_KEYS to real keys")
            if self.v1_token.get_secret_value() == DEV_V1_TOKEN:
                raise ValueError("ENVIRONMENT=production: set V1_TOKEN")
            if self.v1_session_secret.get_secret_value() == DEV_SESSION_SECRET:
                raise ValueError("ENVIRONMENT=production: set V1_SESSION_SECRET")
            if self.webhook_secret.get_secret_value() == DEV_WEBHOOK_SECRET:
                raise ValueError("ENVIRONMENT=production: set WEBHOOK_SECRET")
            if self.flower_password.get_secret_value() == "admin-change-me":
                raise ValueError("ENVIRONMENT=production: set FLOWER_PASSWORD")
        return self

    @cached_property
    def tenant_by_key(self) -> dict[str, str]:
        return dict(self.api_keys)


def get_settings(**overrides: object) -> Settings:
    """Build the settings from the environment (and explicit overrides, for tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
