"""`make run` started with SIGINT ignored (a background job of a script: `make run &`)
still stops on SIGINT, and leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.banner import READY_LINE
from deploy.embedded_valkey import free_port
from deploy.supervisor_process import kill_all, session_members
from taskrecord.settings import Settings
from tests.harness import wait_until
from tests.launcher_helpers import write_stand_in

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def _ignore_sigint() -> None:
    """What a non-interactive shell does to a background job before exec."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_stand_in(tmp_path / "project")


@pytest.fixture
def var_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "var"
    yield path
    # A failed test must not leave a system running (SIGINT may be what failed).
    try:
        leftover = int((path / "supervisord.pid").read_text())
    except (OSError, ValueError):
        return
    if session_members(leftover):
        kill_all(leftover)


def test_child_of_the_wrapper_starts_with_sigint_ignored() -> None:
    """The wrapper used below really hands its child an ignored SIGINT."""
    probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)"
    said = subprocess.run(
        [PYTHON, "-c", probe], preexec_fn=_ignore_sigint, capture_output=True, text=True
    )
    assert said.stdout.strip() == "True"


def test_launcher_started_with_sigint_ignored_stops_on_sigint(project: Path, var_dir: Path) -> None:
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names | {"PYTHONPATH"}}
    env |= {
        "VAR_DIR": str(var_dir),
        "GATEWAY_PORT": str(free_port()),
        "FLOWER_PORT": str(free_port()),
        "SIMULATOR_PORT": str(free_port()),
        "AUTOSCALE_SHORT_MIN": "2",  # two `short` workers, as test_launcher_e2e.py
    }
    launcher = subprocess.Popen(
        [PYTHON, "-m", "deploy.launcher", "--project-root", str(project)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_ignore_sigint,
    )
    output: list[str] = []

    def pump() -> None:
        assert launcher.stdout is not None
        output.extend(launcher.stdout)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:

        def ready() -> bool:
            assert launcher.poll() is None, "".join(output)
            return READY_LINE in "".join(output)

        wait_until(ready, 120, 0.2, "the launcher to report the system ready")
        supervisord = int((var_dir / "supervisord.pid").read_text())
        programs = session_members(supervisord)
        assert len(programs) > 1, programs

        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(90) == 0, "".join(output)
    finally:
        if launcher.poll() is None:
            launcher.terminate()
            launcher.wait(60)
    reader.join(10)
    assert not _alive(supervisord)
    assert session_members(supervisord) == []
    assert [pid for pid in programs if _alive(pid)] == []
    assert "Stopped." in "".join(output)
