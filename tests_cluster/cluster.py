"""The cluster: seven hosts (namespaces) and the processes each runs, started only through
environment variables (testbed's `System.env`, the variables of deploy/env.example) and
bound to their host's address.

    data        Valkey (AOF, password) and PostgreSQL (unprivileged user)
    v1          the V1 simulator
    gw-a, gw-b  a gateway each; gw-b also runs maintenance #2
    w-priority  worker on `priority`; also maintenance #1
    w-short     worker on `short`
    w-long      worker on `long` and, as the spare, `short`
    data2       added by the Sentinel scenario only (tests_cluster/sentinels.py)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from testbed.process import ManagedProcess
from testbed.system import V1_TOKEN, System
from tests_cluster.netns import Host, Network
from tests_cluster.servers import (
    POSTGRES_PORT,
    V1_PORT,
    VALKEY_PORT,
    NetnsPostgres,
    NetnsSimulator,
    NetnsValkey,
)

GATEWAY_PORT = 8000
LEASE_SECONDS = 4.0
ORPHAN_SECONDS = 6.0
# Short leases and orphan times keep the whole suite to minutes; the rest as a deployment.
SETTINGS = {
    "LEASE_SECONDS": str(LEASE_SECONDS),
    "ORPHAN_SECONDS": str(ORPHAN_SECONDS),
    "V1_MAX_CONCURRENCY": "200",
    "V1_PROBE_INTERVAL": "1",
}
WORKERS = {"w-priority": "priority", "w-short": "short", "w-long": "long,short"}
GATEWAYS = ("gw-a", "gw-b")
MAINTENANCE = ("w-priority", "gw-b")
HOSTS = ("data", "v1", *GATEWAYS, *WORKERS)


@dataclass
class Cluster:
    workdir: Path
    net: Network = field(default_factory=Network)
    valkey: NetnsValkey | None = None
    postgres: NetnsPostgres | None = None
    sim: NetnsSimulator | None = None
    systems: dict[str, System] = field(default_factory=dict)
    # "gateway@gw-a" -> how to start it, and its running process.
    starters: dict[str, Callable[[], ManagedProcess]] = field(default_factory=dict)
    procs: dict[str, ManagedProcess] = field(default_factory=dict)

    def host(self, name: str) -> Host:
        return self.net.hosts[name]

    @property
    def redis_url(self) -> str:
        assert self.valkey is not None
        return self.valkey.url

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=5, decode_responses=True)

    def gateway_url(self, host: str) -> str:
        return f"http://{self.host(host).address}:{GATEWAY_PORT}"

    def start(self) -> Cluster:
        self.net.create()
        for name in HOSTS:
            self.net.add_host(name)
        data = self.host("data")
        self.valkey = NetnsValkey(self.workdir / "valkey", port=VALKEY_PORT, host=data.address,
                                  prefix=data.exec_prefix)  # fmt: skip
        self.valkey.start(30)
        self.postgres = NetnsPostgres(port=POSTGRES_PORT, host=data.address, netns=data.ns,
                                      subnet=f"{self.net.subnet}.0/24")  # fmt: skip
        self.postgres.start()
        v1 = self.host("v1")
        self.sim = NetnsSimulator(prefix=v1.exec_prefix, token=V1_TOKEN, capacity=400,
                                  agents=("main",), address=v1.address, port=V1_PORT,
                                  log_path=self.workdir / "v1sim.log")  # fmt: skip
        self.sim.start()
        for name in (*GATEWAYS, *WORKERS):
            self.systems[name] = self._system(name)
        for name in GATEWAYS:
            self._role(f"gateway@{name}", self._gateway_starter(name))
        for name, queues in WORKERS.items():
            self._role(f"worker@{name}", self._worker_starter(name, queues))
        for name in MAINTENANCE:
            self._role(f"maintenance@{name}", self.systems[name].start_maintenance)
        return self

    def _system(self, name: str) -> System:
        host = self.host(name)
        assert self.valkey is not None and self.postgres is not None and self.sim is not None
        return System(
            redis_base=self.valkey.url.rsplit("/", 1)[0],
            db=0,
            v1_url=self.sim.url,
            workdir=self.workdir / name,
            overrides={**SETTINGS, "DATABASE_URL": self.postgres.url, "GATEWAY_HOST": host.address},
            host=host.address,
            prefix=host.exec_prefix,
        )

    def _gateway_starter(self, name: str) -> Callable[[], ManagedProcess]:
        return lambda: self.systems[name].start_gateway(GATEWAY_PORT)

    def _worker_starter(self, name: str, queues: str) -> Callable[[], ManagedProcess]:
        return lambda: self.systems[name].start_worker(queues, name=name)

    def _role(self, role: str, starter: Callable[[], ManagedProcess]) -> None:
        self.starters[role] = starter
        self.procs[role] = starter()

    def start_on_host(self, host: str, role: str, command: list[str]) -> ManagedProcess:
        """Any other program on a host (the hook a Sentinel scenario uses on `data`)."""
        system = self.systems.get(host) or self._system(host)
        proc = ManagedProcess(role, [*self.host(host).exec_prefix, *command], system.env(),
                              self.workdir / host / f"{role}.log").start()  # fmt: skip
        self.starters[role] = lambda: ManagedProcess(
            role, proc.command, proc.env, proc.log_path
        ).start()
        self.procs[role] = proc
        return proc

    def restart(self, role: str) -> ManagedProcess:
        self.procs[role].kill()
        self.procs[role] = self.starters[role]()
        return self.procs[role]

    def retire(self, role: str) -> None:
        """Stop a role for good (heal will not start it again)."""
        self.starters.pop(role)
        self.procs.pop(role).stop(10)

    def heal(self) -> list[str]:
        """Undo every scenario's damage: links up, servers and roles running again."""
        healed = []
        for host in self.net.hosts.values():
            host.heal()
        assert self.valkey is not None and self.postgres is not None
        if self.valkey.process is None or self.valkey.process.poll() is not None:
            self.valkey.restart()
            healed.append("valkey")
        if self.postgres.process is None or self.postgres.process.poll() is not None:
            self.postgres.resume()
            healed.append("postgres")
        for role, proc in self.procs.items():
            if not proc.alive():
                self.restart(role)
                healed.append(role)
        return healed

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            with contextlib.suppress(Exception):
                proc.stop(10)
        for server in (self.sim, self.postgres, self.valkey):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()
        self.net.destroy()
