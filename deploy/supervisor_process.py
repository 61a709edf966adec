"""Run supervisord as the launcher's child and stop it with nothing left behind."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from deploy.errors import LaunchError
from deploy.layout import Layout

logger = logging.getLogger(__name__)

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class Supervisord:
    """One supervisord process in the foreground (nodaemon) in a session of its own."""

    def __init__(self, layout: Layout, env: Mapping[str, str], python: str = sys.executable):
        self.layout = layout
        self.env = dict(env)
        self.python = python
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def start(self) -> None:
        setup = _ChildSetup()
        # Block the stop signals while spawning so a Ctrl+C cannot land between fork and
        # `self.process = ...` and leave an untracked supervisord; the child unblocks them.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            self.process = subprocess.Popen(
                [self.python, "-m", "supervisor.supervisord", "-c", str(self.layout.conf_file)],
                cwd=self.layout.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                # A session of its own: the terminal's Ctrl+C reaches only the launcher, which
                # then stops supervisord in order; and "every process of that session" is
                # what is left to kill if supervisord hangs.
                start_new_session=True,
                preexec_fn=setup,
            )
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait()

    def stop(self, timeout: float, force_requested: Callable[[], bool]) -> None:
        """SIGTERM supervisord (it stops the programs in reverse priority) and wait for it;
        after `timeout` or when `force_requested()` turns true, SIGKILL every process left in
        its session. Then make sure none survives."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while process.poll() is None:
                if force_requested() or time.monotonic() > deadline:
                    logger.warning("Killing every remaining process of the system")
                    kill_all(process.pid)
                    process.wait()
                    break
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(0.2)
        # supervisord reaps its programs before it exits; anything still in its session
        # escaped it (or supervisord itself died), and must not outlive the launcher.
        leftovers = session_members(process.pid)
        if leftovers:
            logger.warning("Killing %d process(es) left behind: %s", len(leftovers), leftovers)
            kill_all(process.pid)

    def ctl(self, *args: str, timeout: float = 15.0) -> subprocess.CompletedProcess[str]:
        """Run supervisorctl against this supervisord."""
        conf = str(self.layout.conf_file)
        return subprocess.run(
            [self.python, "-m", "supervisor.supervisorctl", "-c", conf, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


class _ChildSetup:
    """Runs in the forked child before exec: only async-signal-safe work, prepared ahead."""

    def __init__(self) -> None:
        self.prctl: Callable[..., int] | None = None
        if sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                self.prctl = ctypes.CDLL(None, use_errno=True).prctl

    def __call__(self) -> None:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        if self.prctl is not None:
            # If the launcher dies without stopping it (kill -9), supervisord gets SIGTERM
            # and stops the programs instead of running on unattended.
            self.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def session_members(session_id: int) -> list[int]:
    """Pids of the live processes in a session (Linux /proc; empty elsewhere)."""
    members: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return members
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        # Fields after the command name (which may hold spaces and parentheses):
        # state ppid pgrp session ...
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[3]) == session_id:
            members.append(int(entry.name))
    return members


def kill_session(session_id: int) -> list[int]:
    """SIGKILL every live process of the session; the pids it signalled."""
    pids = session_members(session_id)
    if not Path("/proc").is_dir():
        # No /proc: the session leader's process group is the best we can reach.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(session_id, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def kill_all(session_id: int, timeout: float = 5.0) -> None:
    """SIGKILL the session until none of it is left (a killed process takes a moment to go)."""
    deadline = time.monotonic() + timeout
    while kill_session(session_id) and time.monotonic() < deadline:
        time.sleep(0.05)


def refuse_if_running(layout: Layout) -> None:
    """Fail if a supervisord from an earlier run still uses this data directory."""
    try:
        pid = int(layout.pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        # A recycled pid is not ours unless it is a supervisord running our config.
        ours = b"supervisord" in cmdline and str(layout.conf_file).encode() in cmdline
    except OSError:
        ours = _alive(pid)  # no /proc (or not readable): trust the pid file
    if ours:
        raise LaunchError(
            f"Another supervisord (pid {pid}) is running with {layout.var_dir}: stop that "
            f"`make run` first (or `kill {pid}`), or set VAR_DIR to another directory"
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
