"""`make run` (deploy/launcher.py), end to end: the launcher run as `make run` does, once
with small stand-in programs and once with the real gateway and workers; a killed worker is
restarted and Ctrl+C leaves no process behind.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from deploy.banner import READY_LINE
from deploy.embedded_valkey import free_port
from deploy.programs import WORKERS_GROUP
from taskrecord.settings import Settings
from tests.launcher_helpers import (
    APP_PROGRAMS,
    PYTHON,
    ROOT,
    _listening,
    _no_settings_from_the_environment,  # noqa: F401  (autouse fixture)
    write_stand_in,
)

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
        # supervisorctl names a program of a group (the workers') "group:name".
        name = f"{WORKERS_GROUP}:{program}" if program.startswith("worker-") else program
        text = self.ctl("pid", name).strip()
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
            # Two `short` workers as before the autoscaler (whose seed minimum is 5): the
            # suite's machine has two cores. The autoscaler itself runs.
            "AUTOSCALE_SHORT_MIN": "2",
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


def test_launcher_reports_a_gateway_that_never_gets_ready_and_stops_everything(
    tmp_path: Path, launch: Callable[..., Launch]
) -> None:
    broken = "print('stand-in gateway refuses to start', flush=True)\nraise SystemExit(3)\n"
    project = _stand_in_project(tmp_path, {"app/__main__.py": broken})
    # Long enough for the embedded Valkey to answer on a loaded machine (the deadline
    # covers it too): the gateway, not Redis, must be what never came up.
    launched = launch("--project-root", str(project), "--ready-timeout", "15")
    launched.wait_for_line("did not come up", timeout=60)
    supervisord = int((launched.var_dir / "supervisord.pid").read_text())
    assert launched.process.wait(120) == 1
    said = "".join(launched.output)
    assert "/readyz did not answer 200" in said, said
    assert "stand-in gateway refuses to start" in said  # the tail of var/log/gateway.log
    assert "supervisorctl status" in said and "worker-short" in said
    assert READY_LINE not in said
    assert not _alive(supervisord)
    assert not _session_members(supervisord)


def _stand_in_project(tmp_path: Path, replace: dict[str, str] | None = None) -> Path:
    return write_stand_in(tmp_path / "project", replace)


def test_make_run_brings_up_the_real_system_restarts_a_killed_worker_and_stops_clean(
    launch: Callable[..., Launch],
) -> None:
    # The launcher's own 60 s readiness limit is too short for a loaded 2-core machine.
    _check_restart_and_clean_stop(launch("--ready-timeout", "110"))


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
