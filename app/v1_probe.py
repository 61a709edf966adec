"""Is V1 reachable, and does it take our token? Asked of `GET /v1/models` (no agent run),
at most once per `V1_PROBE_INTERVAL`, so `/readyz` stays cheap under frequent polling."""

from __future__ import annotations

import time

import anyio
import httpx

from taskrecord.settings import Settings


class V1Probe:
    def __init__(self, settings: Settings) -> None:
        self.url = (settings.v1_url or "").rstrip("/") + "/v1/models"
        self.configured = bool(settings.v1_url)
        self.token = settings.v1_token
        self.interval = settings.v1_probe_interval
        self.timeout = settings.v1_connect_timeout
        self._verdict = ""
        self._checked_at = float("-inf")
        self._lock = anyio.Lock()

    async def verdict(self) -> str:
        """`ok`, or what is wrong (`error: unauthorized`, `error: unreachable`, ...)."""
        async with self._lock:  # one probe at a time; the others take its answer
            if time.monotonic() - self._checked_at >= self.interval:
                self._verdict = await self._probe()
                self._checked_at = time.monotonic()
            return self._verdict

    async def _probe(self) -> str:
        if not self.configured:
            return "error: V1_URL is not set"
        headers = {"Authorization": f"Bearer {self.token.get_secret_value()}"}
        try:
            async with httpx.AsyncClient(timeout=self.timeout) as client:
                response = await client.get(self.url, headers=headers)
        except httpx.HTTPError as exc:
            return f"error: unreachable ({type(exc).__name__})"
        if response.status_code in (401, 403):
            return "error: unauthorized (V1 refuses V1_TOKEN)"
        if response.status_code != 200:
            return f"error: HTTP {response.status_code}"
        return "ok"
