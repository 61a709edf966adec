"""Run the V1 simulator as a subprocess (tests, benchmarks) and talk to its control endpoints."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import quote

import httpx

# The directory holding the v1sim package, so `-m v1sim` imports from any working directory.
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SimulatorError(RuntimeError):
    """The simulator process could not be started or stopped cleanly."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class SimulatorProcess:
    """`python -m v1sim` in a child process, started on enter and stopped on exit.

    The token goes through the environment (V1_TOKEN), not the command line, and the rest of
    the parent's environment is passed on so coverage's subprocess hooks keep working.
    """

    def __init__(
        self,
        *,
        token: str = "sim-token",
        agents: Sequence[str] = ("main",),
        capacity: int = 8,
        overhead: float = 0.0,
        default_agent: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = 20.0,
        log_path: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.token = token
        self.agents = list(agents)
        self.capacity = capacity
        self.overhead = overhead
        self.default_agent = default_agent
        self.host = host
        self.port = port or 0
        self._fixed_port = port is not None
        self.startup_timeout = startup_timeout
        self._keep_log = log_path is not None
        self.log_path = Path(log_path) if log_path is not None else None
        self._extra_env = env or {}
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._client: httpx.Client | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _command(self) -> list[str]:
        command = [sys.executable, "-m", "v1sim", "--host", self.host, "--port", str(self.port)]
        command += ["--agents", ",".join(self.agents), "--capacity", str(self.capacity)]
        command += ["--overhead", str(self.overhead), "--log-level", "warning"]
        if self.default_agent is not None:
            command += ["--default-agent", self.default_agent]
        return command

    def _env(self) -> dict[str, str]:
        env = {**os.environ, **self._extra_env, "V1_TOKEN": self.token}
        paths = [str(_PROJECT_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(paths)
        return env

    def start(self) -> SimulatorProcess:
        if self._proc is not None:
            raise SimulatorError("simulator already started")
        if self.log_path is None:
            handle, name = tempfile.mkstemp(prefix="v1sim-", suffix=".log")
            os.close(handle)
            self.log_path = Path(name)
        self._log = self.log_path.open("ab")
        self._client = httpx.Client(base_url=self.url, timeout=10.0, trust_env=False)
        try:
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self) -> None:
        assert self._log is not None and self._client is not None
        # A port picked here may be taken before the child binds it: retry with another.
        for _ in range(1 if self._fixed_port else 3):
            if not self._fixed_port:
                self.port = free_port(self.host)
                self._client.base_url = httpx.URL(self.url)
            self._proc = subprocess.Popen(
                self._command(), env=self._env(), stdout=self._log, stderr=subprocess.STDOUT
            )
            if self._wait_healthy():
                return
            if "address already in use" not in self._log_tail().lower():
                break
        raise SimulatorError(f"V1 simulator exited at start; log:\n{self._log_tail()}")

    def _wait_healthy(self) -> bool:
        """True once /healthz answers, False if the process exited first."""
        assert self._proc is not None and self._client is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                return False
            try:
                response = self._client.get("/healthz", timeout=1.0)
                if response.status_code == 200 and response.json().get("simulator") is True:
                    return True
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise SimulatorError(
            f"V1 simulator not healthy after {self.startup_timeout}s; log:\n{self._log_tail()}"
        )

    def _log_tail(self, limit: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return self.log_path.read_bytes()[-limit:].decode(errors="replace")

    @property
    def _http(self) -> httpx.Client:
        if self._client is None or self._proc is None:
            raise SimulatorError("simulator not started")
        return self._client

    def requests(self, tag: str | None = None) -> list[dict[str, Any]]:
        """Records of calls (oldest first), optionally only those tagged `[sim:tag=...]`."""
        params = {"tag": tag} if tag is not None else None
        response = self._http.get("/_sim/requests", params=params)
        response.raise_for_status()
        records: list[dict[str, Any]] = response.json()["requests"]
        return records

    def transcript(self, session: str) -> list[dict[str, str]] | None:
        """The stored transcript of a session key, None if the simulator keeps none for it."""
        response = self._http.get(f"/_sim/sessions/{quote(session, safe='')}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        transcript: list[dict[str, str]] = response.json()["transcript"]
        return transcript

    def stats(self) -> dict[str, Any]:
        response = self._http.get("/_sim/stats")
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def reset(self) -> None:
        self._http.post("/_sim/reset").raise_for_status()

    def _terminate(self, grace: float = 5.0) -> None:
        # SIGTERM lets uvicorn drain runs in flight (like V1); kill if that takes too long.
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5.0)

    def stop(self, grace: float = 5.0) -> None:
        self._terminate(grace)
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._log is not None:
            self._log.close()
            self._log = None
            if not self._keep_log and self.log_path is not None:
                self.log_path.unlink(missing_ok=True)
                self.log_path = None

    def __enter__(self) -> SimulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
