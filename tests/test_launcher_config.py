"""`make run` (deploy/launcher.py), unit tests: the supervisord config the launcher writes,
the endpoints and var/ layout it picks, port checks and the ready banner.

The deployment files in deploy/ are checked in test_launcher_deploy_files.py, the launcher
run end to end in test_launcher_e2e.py.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from deploy.banner import READY_LINE, ready_banner, redact_url
from deploy.embedded_valkey import free_port
from deploy.endpoints import Endpoints, embedded_valkey_port, port_conflicts
from deploy.layout import Layout
from deploy.programs import QUEUES, WORKERS_GROUP, secret_environment, shared_environment
from taskrecord.settings import get_settings
from tests.launcher_helpers import (
    APP_PROGRAMS,
    ROOT,
    SECRET_PASSWORD,
    SECRET_TOKEN,
    _listening,
    _no_settings_from_the_environment,  # noqa: F401  (autouse fixture)
    _parse,
    _programs,
    _render,
    _settings,
)

# --- unit: the rendered supervisord config -------------------------------------------


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


def test_every_worker_and_only_workers_share_one_group_that_stops_together(
    tmp_path: Path,
) -> None:
    """supervisord stops one group at a time and waits for it: the workers (the fixed ones
    and every autoscaled slot) are one group, so a shutdown warm-stops them in parallel."""
    parser = _parse(_render(_settings(), tmp_path)[0])
    programs = _programs(parser)
    workers = sorted(name for name in programs if name.startswith("worker-"))
    assert len(workers) > 2
    group = parser[f"group:{WORKERS_GROUP}"]
    assert sorted(group["programs"].split(",")) == workers
    assert group["priority"] == programs["worker-short"]["priority"]
    groups = [name for name in parser.sections() if name.startswith("group:")]
    assert groups == [f"group:{WORKERS_GROUP}"]


def test_workers_start_niced_and_nothing_else_does(tmp_path: Path) -> None:
    programs = _programs(_parse(_render(_settings(worker_nice=19), tmp_path / "a")[0]))
    for name, program in programs.items():
        argv = shlex.split(program["command"])
        if name.startswith("worker-"):
            assert argv[:3] == ["nice", "-n", "19"] and argv[4:6] == ["-m", "celery"]
        else:
            assert argv[0] != "nice", name
    unniced = _programs(_parse(_render(_settings(worker_nice=0), tmp_path / "b")[0]))
    assert shlex.split(unniced["worker-short"]["command"])[1:3] == ["-m", "celery"]


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
    groups = {group.name: group for group in options.process_group_configs}
    processes = {p.name for group in groups.values() for p in group.process_configs}
    assert processes == APP_PROGRAMS | {"valkey", "v1sim"}
    workers = {p.name: p for p in groups[WORKERS_GROUP].process_configs}
    assert set(workers) == {name for name in APP_PROGRAMS if name.startswith("worker-")}
    assert "short@%h" in workers["worker-short"].command


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
