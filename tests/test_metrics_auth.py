"""Metrics are not public: the gateway's /metrics answers only its METRICS_TOKEN, and
Flower's own /metrics (exempt from Flower's auth upstream) asks for Flower's basic auth
when Flower is started the way `make run` starts it."""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from starlette.requests import Request

from app.api.metrics import require_metrics_token
from app.errors import ApiError
from deploy.embedded_valkey import free_port
from deploy.endpoints import Endpoints
from deploy.layout import Layout
from deploy.programs import FLOWER_CONFIG, plan_programs
from taskrecord.settings import DEV_METRICS_TOKEN, Settings, get_settings
from tests.harness import API_KEY, ROOT, ManagedProcess, System

FLOWER_AUTH = ("ops", "flower-metrics-pass")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_gateway_metrics_need_the_metrics_token(system: System) -> None:
    url = f"{system.url}/metrics"
    refused = [
        httpx.get(url),
        httpx.get(url, headers=bearer("not-the-token")),
        httpx.get(url, headers=bearer(API_KEY)),  # an API key is not the metrics token
    ]
    allowed = httpx.get(url, headers=bearer(DEV_METRICS_TOKEN))
    for reply in refused:
        assert reply.status_code == 401
        assert reply.headers["www-authenticate"] == "Bearer"
        assert reply.json()["error"]["type"] == "unauthorized"
        assert "openclaw_" not in reply.text
    assert allowed.status_code == 200
    assert "openclaw_queue_depth" in allowed.text


def flower_command(tmp_path: Path, port: int) -> list[str]:
    """Flower's command line from the plan `make run` runs (deploy/programs.py)."""
    settings = get_settings(flower_port=port)
    layout = Layout.create(ROOT, str(tmp_path / "var"))
    endpoints = Endpoints("redis://127.0.0.1:1/0", "http://127.0.0.1:2")
    [flower] = [p for p in plan_programs(settings, endpoints, layout, sys.executable)
                if p.name == "flower"]  # fmt: skip
    assert f"--conf={FLOWER_CONFIG}" in flower.command
    return list(flower.command)


@pytest.fixture
def flower(system: System, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = ManagedProcess(
        "flower", flower_command(tmp_path, port),
        system.env(FLOWER_BASIC_AUTH=":".join(FLOWER_AUTH)), tmp_path / "flower.log",
    ).start()  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_for_http(f"{url}/healthcheck", 60)
        yield url
    finally:
        proc.stop()


def test_flower_metrics_need_flowers_basic_auth(flower: str) -> None:
    refused = [
        httpx.get(f"{flower}/metrics", timeout=10),
        httpx.get(f"{flower}/metrics", auth=("ops", "wrong"), timeout=10),
        httpx.get(f"{flower}/metrics", headers=bearer(DEV_METRICS_TOKEN), timeout=10),
    ]
    allowed = httpx.get(f"{flower}/metrics", auth=FLOWER_AUTH, timeout=10)
    for reply in refused:
        assert reply.status_code == 401
        assert "flower_" not in reply.text
    assert allowed.status_code == 200
    assert "flower_events_total" in allowed.text
    # Liveness probes still get their answer (it says "OK" and nothing else).
    assert httpx.get(f"{flower}/healthcheck", timeout=10).text == "OK"


def _production(**overrides: str) -> Settings:
    secrets = {
        "environment": "production", "api_keys": "k:t", "admin_api_keys": "a", "v1_token": "t",
        "v1_session_secret": "s", "flower_password": "p",
        "webhook_secret": "whsec_" + base64.b64encode(b"w" * 24).decode(),
    }  # fmt: skip
    return get_settings(**secrets, **overrides)


def _asks(settings: Settings, token: str) -> int:
    """The status the metrics check gives a request carrying `token` (200: let through)."""
    request = Request({"type": "http", "headers": [(b"authorization", f"Bearer {token}".encode())]})
    try:
        require_metrics_token(request, SimpleNamespace(settings=settings))  # type: ignore[arg-type]
    except ApiError as refused:
        return refused.status
    return 200


def test_the_development_token_opens_nothing_in_production() -> None:
    assert _asks(get_settings(), DEV_METRICS_TOKEN) == 200  # development: the default works
    assert _asks(_production(), DEV_METRICS_TOKEN) == 401
    assert _asks(_production(metrics_token="scrape-me"), "scrape-me") == 200
