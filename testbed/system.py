"""A V2 system (`System`): gateway, workers and maintenance against a given Valkey database
and V1 URL, with the test keys and tokens (`API_KEY`, `V1_TOKEN`, ...)."""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from deploy.embedded_valkey import free_port
from testbed.process import ROOT, ManagedProcess

API_KEY = "test-key-alpha"
OTHER_API_KEY = "test-key-beta"
V1_TOKEN = "sim-token"
ADMIN_KEY = "test-admin-key"


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
    # Where the gateway listens and is reached, and what every command is run under (the
    # cluster test: its host's address and `ip netns exec <host>`).
    host: str = "127.0.0.1"
    prefix: list[str] = field(default_factory=list)

    @property
    def redis_url(self) -> str:
        return f"{self.redis_base}/{self.db}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.gateway_port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            REDIS_URL=self.redis_url,
            DATABASE_URL=f"sqlite:///{self.workdir / 'tasks.db'}",
            V1_URL=self.v1_url,
            V1_TOKEN=V1_TOKEN,
            API_KEYS=f"{API_KEY}:alpha,{OTHER_API_KEY}:beta",
            # alpha may use the `priority` queue (priority 9-10); beta may not.
            PRIORITY_TENANTS="alpha",
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

    def start_gateway(self, port: int | None = None, ready_path: str = "/readyz") -> ManagedProcess:
        """Start it and wait until `ready_path` answers 200 (`/healthz` where V1 is meant
        to be unusable, which /readyz reports)."""
        self.gateway_port = port or self.gateway_port or free_port()
        proc = ManagedProcess(
            f"gateway-{self.db}",
            [*self.prefix, sys.executable, "-m", "app"],
            self.env(GATEWAY_PORT=str(self.gateway_port)),
            self.workdir / f"gateway-{uuid.uuid4().hex[:6]}.log",
        ).start()
        self.processes.append(proc)
        self.gateway = proc
        proc.wait_for_http(f"{self.url}{ready_path}", 30)
        return proc

    def start_worker(
        self, queues: str = "priority,short,long", name: str | None = None, concurrency: int = 50
    ) -> ManagedProcess:
        name = name or f"w{uuid.uuid4().hex[:6]}"
        proc = ManagedProcess(
            f"worker-{name}",
            [
                *self.prefix,
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
            [*self.prefix, sys.executable, "-m", "tasks.maintenance"],
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
