"""Shared by the `tests/test_launcher_*.py` files (`make run`, deploy/launcher.py, deploy/):
paths and secrets, the autouse fixture that keeps the suite's environment out of `Settings`,
rendering and parsing the supervisord config, and a socket that holds a port.

A test module imports `_no_settings_from_the_environment` to have it applied to its tests.
"""

from __future__ import annotations

import configparser
import os
import socket
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from deploy.endpoints import Endpoints, resolve_endpoints
from deploy.layout import Layout
from deploy.programs import plan_programs, shared_environment
from deploy.supervisor_conf import render_supervisord_conf
from taskrecord.settings import Settings, get_settings

__all__ = [
    "APP_PROGRAMS",
    "DEPLOY",
    "PYTHON",
    "ROOT",
    "SECRET_PASSWORD",
    "SECRET_TOKEN",
    "STAND_IN",
    "_listening",
    "_no_settings_from_the_environment",
    "_parse",
    "_programs",
    "_render",
    "_settings",
    "write_stand_in",
]

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
PYTHON = sys.executable
SECRET_TOKEN = "v1-token-that-must-stay-secret"
SECRET_PASSWORD = "flower-password-that-must-stay-secret"
APP_PROGRAMS = {
    "gateway",
    "worker-priority",
    "worker-short",
    "worker-long",
    # A second worker per queue, so a lifetime recycle never leaves a queue without one.
    "worker-priority-2",
    "worker-short-2",
    "worker-long-2",
    "maintenance",
    "flower",
}


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings here come from explicit values only, whatever the suite's environment holds."""
    names = {name.upper() for name in Settings.model_fields}
    for key in list(os.environ):
        if key.upper() in names:
            monkeypatch.delenv(key)


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "v1_token": SecretStr(SECRET_TOKEN),
        "flower_password": SecretStr(SECRET_PASSWORD),
        # The fixed two workers per queue; the autoscaled layout: tests/unit/test_autoscale.py.
        "autoscale": False,
    }
    values.update(overrides)
    return get_settings(**values)


def _render(settings: Settings, tmp_path: Path) -> tuple[str, Layout, Endpoints]:
    layout = Layout.create(ROOT, str(tmp_path / "var"))
    layout.make_dirs()
    endpoints = resolve_endpoints(settings, layout)
    programs = plan_programs(settings, endpoints, layout, PYTHON)
    env = shared_environment(settings, endpoints, layout)
    return render_supervisord_conf(programs, env, layout), layout, endpoints


def _parse(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";", "#"))
    parser.read_string(text)
    return parser


def _programs(parser: configparser.RawConfigParser) -> dict[str, configparser.SectionProxy]:
    return {
        name.removeprefix("program:"): parser[name]
        for name in parser.sections()
        if name.startswith("program:")
    }


class _listening:
    """A socket listening on 127.0.0.1:port for the duration of a `with` block."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen()

    def __enter__(self) -> _listening:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


# Stand-ins for the gateway, maintenance and the simulator (real Valkey, supervisord, Celery
# workers and Flower): launcher tests are about the launcher, not the system's progress.
STAND_IN = {
    "app/__init__.py": "",
    "app/__main__.py": '''
"""Stand-in gateway: /readyz answers 200 once Redis answers PING."""
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis

client = redis.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=1)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/readyz" and client.ping() else 503)
        self.end_headers()


address = (os.environ.get("GATEWAY_HOST", "127.0.0.1"), int(os.environ["GATEWAY_PORT"]))
ThreadingHTTPServer(address, Handler).serve_forever()
''',
    "tasks/__init__.py": """
import os

from celery import Celery

app = Celery("tasks", broker=os.environ["REDIS_URL"])
""",
    "tasks/maintenance.py": """
import signal

while True:
    signal.pause()
""",
    "v1sim/__init__.py": "",
    "v1sim/__main__.py": '''
"""Stand-in simulator: exits (and fails the test) without its options and token."""
import argparse
import os
import signal
import sys

parser = argparse.ArgumentParser()
for option in ("--host", "--port", "--agents", "--capacity"):
    parser.add_argument(option, required=True)
parser.parse_args()
if os.environ.get("V1_TOKEN") != "dev-v1-token" or "dev-v1-token" in sys.argv:
    sys.exit("V1_TOKEN must come through the environment")
while True:
    signal.pause()
''',
}


def write_stand_in(root: Path, replace: dict[str, str] | None = None) -> Path:
    """A project tree at `root` whose programs are the stand-ins (some replaced)."""
    for name, text in (STAND_IN | (replace or {})).items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root
