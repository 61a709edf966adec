"""/docs works with no internet: headless Chromium, in a network namespace where nothing but
127.0.0.1 answers (tests/offline_browser.py), renders Swagger UI with every operation of
the gateway's OpenAPI document, and the page asks no other host for anything.

Chromium is Debian's `chromium`, installed by `make browser` (a prerequisite of `make test`).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import ROOT, System
from tests.offline_browser import BROWSER_TIMEOUT, UnixToTcp

METHODS = {"get", "post", "put", "patch", "delete"}
# Headless, as root, without the browser's own background traffic (updates, sync, autofill).
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    "--virtual-time-budget=20000",  # lets Swagger UI fetch the document and render it
]


@dataclass(frozen=True)
class Page:
    origin: str
    dom: str
    requests: list[str]  # every URL the page (not the browser itself) asked for


@pytest.fixture(scope="module")
def docs(system: System, tmp_path_factory: pytest.TempPathFactory) -> Page:
    chromium = shutil.which("chromium")
    assert chromium, "no chromium: `make browser` installs Debian's package"
    work = tmp_path_factory.mktemp("browser")
    origin = f"http://127.0.0.1:{system.gateway_port}"
    netlog = work / "net.json"
    command = [
        *("unshare", "--net", "--", sys.executable, "-m", "tests.offline_browser"),
        *(str(work / "gateway.sock"), str(system.gateway_port), "--", chromium, *FLAGS),
        f"--user-data-dir={work / 'profile'}",
        f"--log-net-log={netlog}",
        "--dump-dom",
        f"{origin}/docs",
    ]
    with UnixToTcp(work / "gateway.sock", system.gateway_port):
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=BROWSER_TIMEOUT + 30
        )
    assert done.returncode == 0, done.stderr[-3000:]
    return Page(origin, done.stdout, _page_requests(netlog, origin))


@pytest.fixture(scope="module")
def document(system: System) -> dict[str, Any]:
    doc: dict[str, Any] = httpx.get(f"{system.url}/openapi.json", timeout=30).json()
    return doc


def test_docs_render_every_operation_with_only_loopback_reachable(
    docs: Page, document: dict[str, Any]
) -> None:
    operations = [
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in METHODS
    ]
    assert 'id="swagger-ui"' in docs.dom
    rendered = re.findall(r'class="opblock opblock-(\w+)', docs.dom)
    assert len(rendered) == len(operations), (rendered, operations)
    assert sorted(rendered) == sorted(method for method, _ in operations)
    shown_paths = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', docs.dom))
    assert shown_paths == set(document["paths"])
    assert "/v1/tasks/{task_id}/cancel" in shown_paths


def test_docs_page_asks_no_other_host_for_anything(docs: Page) -> None:
    assert docs.requests, "the net log recorded no request of the page"
    assert f"{docs.origin}/docs" in docs.requests
    assert f"{docs.origin}/openapi.json" in docs.requests
    assert any(url.endswith("/swagger-ui-bundle.js") for url in docs.requests)
    elsewhere = [url for url in docs.requests if not url.startswith(f"{docs.origin}/")]
    assert elsewhere == []
    referenced = re.findall(r'(?:src|href|action)="((?:https?:)?//[^"]+)"', docs.dom)
    assert [url for url in referenced if not url.startswith(docs.origin)] == []


def test_docs_assets_come_from_the_installed_package_and_redoc_is_gone(system: System) -> None:
    html = httpx.get(f"{system.url}/docs", timeout=30).text
    assert re.findall(r"https?://", html) == []
    asset = httpx.get(f"{system.url}/static-offline-docs/swagger-ui-bundle.js", timeout=30)
    assert asset.status_code == 200
    assert asset.headers["content-type"].startswith(("application/javascript", "text/javascript"))
    assert httpx.get(f"{system.url}/redoc", timeout=30).status_code == 404


def _page_requests(netlog: Path, origin: str) -> list[str]:
    """URLs of requests the page made: the document itself, or one it initiated. (Chromium's
    own, such as update checks, have no initiator; they fail in the namespace anyway.)"""
    log = json.loads(netlog.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params", {})
        if event["type"] != start_job or "url" not in params:
            continue
        if params.get("request_type") == "main frame" or params.get("initiator") == origin:
            urls.append(params["url"])
    return urls
