"""Real processes for the tests: gateway, Celery workers, maintenance, on real ports.

Each `System` uses its own Redis database number and SQLite file, so systems started with
different settings (short time limits, small budgets) never see each other's tasks.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.embedded_valkey import free_port

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "test-key-alpha"
OTHER_API_KEY = "test-key-beta"
V1_TOKEN = "sim-token"
ADMIN_KEY = "test-admin-key"


_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """A killed test run must not leave workers behind (Linux: SIGTERM when pytest dies)."""
    _libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class ManagedProcess:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_for_log(self, marker: str, timeout: float) -> None:
        def seen() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited early:\n{self.log()[-3000:]}")
            return marker in self.log()

        wait_until(seen, timeout, 0.1, f"{self.name} to log {marker!r}")

    def wait_for_http(self, url: str, timeout: float, **request: Any) -> None:
        """Until `url` answers 200; fail at once if this process exits meanwhile."""

        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.log()[-3000:]}")
            try:
                return httpx.get(url, timeout=2, **request).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(ready, timeout, 0.1, f"{self.name} at {url}")

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


@dataclass
class System:
    """Gateway + workers + maintenance against a given Valkey database and V1 URL."""

    redis_base: str  # redis://127.0.0.1:PORT
    db: int
    v1_url: str
    workdir: Path
    overrides: dict[str, str] = field(default_factory=dict)
    processes: list[ManagedProcess] = field(default_factory=list)
    gateway: ManagedProcess | None = None
    gateway_port: int = 0

    @property
    def redis_url(self) -> str:
        return f"{self.redis_base}/{self.db}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            REDIS_URL=self.redis_url,
            DATABASE_URL=f"sqlite:///{self.workdir / 'tasks.db'}",
            V1_URL=self.v1_url,
            V1_TOKEN=V1_TOKEN,
            API_KEYS=f"{API_KEY}:alpha,{OTHER_API_KEY}:beta",
            LEASE_SECONDS="3",
            RETRY_BASE_DELAY="0.2",
            RETRY_MAX_DELAY="1",
            V1_MAX_CONCURRENCY="100",
            BREAKER_THRESHOLD="1000",
            ADMIN_API_KEYS=ADMIN_KEY,
            PYTHONUNBUFFERED="1",
            PYTHONPATH=str(ROOT),
        )
        env.update(self.overrides)
        env.update(extra)
        return env

    def start_gateway(self, port: int | None = None) -> ManagedProcess:
        self.gateway_port = port or self.gateway_port or free_port()
        proc = ManagedProcess(
            f"gateway-{self.db}",
            [sys.executable, "-m", "app"],
            self.env(GATEWAY_PORT=str(self.gateway_port)),
            self.workdir / f"gateway-{uuid.uuid4().hex[:6]}.log",
        ).start()
        self.processes.append(proc)
        self.gateway = proc
        proc.wait_for_http(f"{self.url}/readyz", 30)
        return proc

    def start_worker(
        self, queues: str = "priority,short,long", name: str | None = None, concurrency: int = 50
    ) -> ManagedProcess:
        name = name or f"w{uuid.uuid4().hex[:6]}"
        proc = ManagedProcess(
            f"worker-{name}",
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tasks",
                "worker",
                "-P",
                "gevent",
                "-Q",
                queues,
                "-n",
                f"{name}@%h",
                "-c",
                str(concurrency),
                "-E",
                "--without-mingle",
                "--without-gossip",
                "-l",
                "INFO",
            ],
            self.env(),
            self.workdir / f"worker-{name}.log",
        ).start()
        self.processes.append(proc)
        proc.wait_for_log("ready.", 60)
        return proc

    def start_maintenance(self) -> ManagedProcess:
        proc = ManagedProcess(
            f"maintenance-{self.db}",
            [sys.executable, "-m", "tasks.maintenance"],
            self.env(),
            self.workdir / "maintenance.log",
        ).start()
        self.processes.append(proc)
        proc.wait_for_log("maintenance running", 30)
        return proc

    def client(self, api_key: str = API_KEY) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        )

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()

    def __enter__(self) -> System:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def submit(client: httpx.Client, message: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/tasks", json={"message": message, **fields})
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_for_state(
    client: httpx.Client, task_id: str, states: tuple[str, ...] | str, timeout: float = 30
) -> dict[str, Any]:
    wanted = (states,) if isinstance(states, str) else states
    last: dict[str, Any] = {}

    def check() -> dict[str, Any] | None:
        last.update(client.get(f"/v1/tasks/{task_id}").json())
        return last if last.get("state") in wanted else None

    try:
        result: dict[str, Any] = wait_until(check, timeout, 0.1, f"task {task_id} in {wanted}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {last}") from None
    return result


def wait_terminal(client: httpx.Client, task_id: str, timeout: float = 30) -> dict[str, Any]:
    return wait_for_state(
        client, task_id, ("succeeded", "failed", "cancelled", "timed_out"), timeout
    )


def tag() -> str:
    return uuid.uuid4().hex[:12]


@contextlib.contextmanager
def running_system(system: System) -> Iterator[System]:
    try:
        yield system
    finally:
        system.stop()


# One counter for the whole session (this module is imported once, unlike conftest).
_db_numbers = itertools.count(1)


def new_system(valkey: Any, v1_url: str, workdir: Path, **overrides: str) -> System:
    """A system on its own Redis database of `valkey`, with its own SQLite file."""
    return System(
        redis_base=valkey.url.rsplit("/", 1)[0],
        db=next(_db_numbers),
        v1_url=v1_url,
        workdir=workdir,
        overrides=overrides,
    )
