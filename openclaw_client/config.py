"""Client configuration: from arguments, else `OPENCLAW_URL` / `OPENCLAW_API_KEY`."""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx

from openclaw_client.errors import ConfigurationError

DEFAULT_URL = "http://127.0.0.1:8000"  # where `make run` serves the gateway
URL_ENV = "OPENCLAW_URL"
API_KEY_ENV = "OPENCLAW_API_KEY"
USER_AGENT = "openclaw-client/0.1"


@dataclass(frozen=True)
class FollowPolicy:
    """How `follow` (and `wait`) ride out a dropped stream or a restarting gateway.

    It reconnects from the last seq it yielded after `initial_delay`, doubling up to
    `max_delay` (with jitter, so many followers do not return at once), and gives up with
    `ServerUnavailable` once `give_up_after` seconds pass without a working connection.
    `read_timeout` bounds the silence on an open stream: the gateway sends a ping every 15 s,
    so a longer silence means a dead connection, which is then replaced.
    """

    initial_delay: float = 0.1
    max_delay: float = 2.0
    give_up_after: float = 120.0
    read_timeout: float = 45.0


@dataclass(frozen=True)
class ClientConfig:
    base_url: str
    api_key: str
    timeout: float = 30.0
    connect_timeout: float = 5.0
    follow: FollowPolicy = FollowPolicy()

    @classmethod
    def resolve(
        cls,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        follow: FollowPolicy | None = None,
    ) -> ClientConfig:
        url = (base_url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        key = api_key or os.environ.get(API_KEY_ENV)
        if not key:
            raise ConfigurationError(f"no API key: pass api_key=... or set {API_KEY_ENV}")
        if not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"{URL_ENV} must be an http(s) URL, got {url!r}")
        return cls(url, key, timeout, follow=follow or FollowPolicy())

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}", "User-Agent": USER_AGENT}

    def http_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout, connect=self.connect_timeout)

    def stream_timeout(self, remaining: float | None) -> httpx.Timeout:
        """Per stream connection: a read waits at most until the caller's deadline."""
        read = self.follow.read_timeout
        if remaining is not None:
            read = max(min(read, remaining), 0.01)
        return httpx.Timeout(self.timeout, connect=self.connect_timeout, read=read)
