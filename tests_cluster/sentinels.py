"""Valkey under Sentinel across hosts, and a second system that reaches it only through the
sentinels (the failover scenario, test_h).

    data      primary (port 6380, beside the cluster's own Valkey) and sentinel #1
    data2     its replica (`replicaof`) and sentinel #2 (a host added for this)
    gw-a      sentinel #3

Data nodes and sentinels ask for passwords (REDIS_URL's, REDIS_SENTINEL_PASSWORD). The
system is the cluster's layout again (gateways on gw-a/gw-b port 8001, the three workers,
maintenance on w-priority and gw-b) with its own PostgreSQL database; its environment names
the sentinels only: REDIS_URL's host resolves nowhere.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import redis

from deploy.embedded_valkey import STREAM_NODE_MAX_BYTES, valkey_binary
from testbed.process import ManagedProcess, wait_until
from testbed.system import System
from tests_cluster.cluster import GATEWAYS, MAINTENANCE, SETTINGS, WORKERS, Cluster
from tests_cluster.servers import VALKEY_PASSWORD

DATA_PORT = 6380
SENTINEL_PORT = 26379
GATEWAY_PORT = 8001
MASTER = "openclaw"
SENTINEL_PASSWORD = "cluster-sentinel-password"
DOWN_AFTER_MS = 1000


@dataclass
class CrossHostSentinels:
    cluster: Cluster
    primary_host: str = "data"
    replica_host: str = "data2"
    sentinel_hosts: tuple[str, ...] = ("data", "data2", "gw-a")
    systems: dict[str, System] = field(default_factory=dict)
    roles: list[str] = field(default_factory=list)
    pool: ThreadPoolExecutor | None = None
    # Each instance's own folders (logs, AOF, sentinel files): the cluster is per session.
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    def address(self, host: str) -> str:
        return self.cluster.host(host).address

    def _start(self, host: str, role: str, command: list[str]) -> ManagedProcess:
        self.roles.append(role)
        return self.cluster.start_on_host(host, f"{role}-{self.run}", command)

    def _valkey(self, host: str, *flags: str) -> ManagedProcess:
        folder = self.cluster.workdir / host / f"valkey-sentinel-{self.run}"
        folder.mkdir(parents=True, exist_ok=True)
        command = [valkey_binary(), "--bind", self.address(host), "--port", str(DATA_PORT),
                   "--dir", str(folder), "--appendonly", "yes", "--appendfsync", "everysec",
                   "--save", "", "--stream-node-max-bytes", str(STREAM_NODE_MAX_BYTES),
                   "--requirepass", VALKEY_PASSWORD, "--masterauth", VALKEY_PASSWORD,
                   *flags]  # fmt: skip
        return self._start(host, f"valkey@{host}", command)

    def _sentinel(self, host: str) -> ManagedProcess:
        conf = self.cluster.workdir / host / f"sentinel-{self.run}.conf"  # it rewrites it
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            f"port {SENTINEL_PORT}\nbind {self.address(host)}\ndir {conf.parent}\n"
            f"requirepass {SENTINEL_PASSWORD}\nsentinel sentinel-pass {SENTINEL_PASSWORD}\n"
            f"sentinel monitor {MASTER} {self.address(self.primary_host)} {DATA_PORT} 2\n"
            f"sentinel auth-pass {MASTER} {VALKEY_PASSWORD}\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} 5000\n"
        )
        return self._start(host, f"sentinel@{host}", [valkey_binary(), str(conf), "--sentinel"])

    def node(self, host: str) -> redis.Redis:
        return redis.Redis(host=self.address(host), port=DATA_PORT, password=VALKEY_PASSWORD,
                           socket_timeout=2, decode_responses=True)  # fmt: skip

    def sentinel(self, host: str) -> redis.Redis:
        return redis.Redis(host=self.address(host), port=SENTINEL_PORT,
                           password=SENTINEL_PASSWORD, socket_timeout=1,
                           decode_responses=True)  # fmt: skip

    def start_servers(self) -> None:
        """Primary, replica, sentinels; back once the replica is in sync and every sentinel
        knows the replica and both other sentinels (what a failover needs)."""
        if self.replica_host not in self.cluster.net.hosts:
            self.cluster.net.add_host(self.replica_host)
        self._valkey(self.primary_host)
        wait_until(lambda: _answers(self.node(self.primary_host)), 30, 0.1, "the primary")
        self._valkey(self.replica_host, "--replicaof", self.address(self.primary_host),
                     str(DATA_PORT))  # fmt: skip
        for host in self.sentinel_hosts:
            self._sentinel(host)
        wait_until(self._in_sync, 30, 0.1, "the replica in sync")
        wait_until(self._sentinels_agree, 30, 0.2, "sentinels that know each other")

    def _in_sync(self) -> bool:
        info = _info(self.node(self.replica_host))
        return info.get("master_link_status") == "up"

    def _sentinels_agree(self) -> bool:
        for host in self.sentinel_hosts:
            client = self.sentinel(host)
            try:
                others = client.execute_command("SENTINEL", "SENTINELS", MASTER)  # type: ignore[no-untyped-call]
                replicas = client.execute_command("SENTINEL", "REPLICAS", MASTER)  # type: ignore[no-untyped-call]
            except redis.RedisError:
                return False
            finally:
                client.close()
            if len(others) < len(self.sentinel_hosts) - 1 or not replicas:
                return False
        return True

    def primary_named(self, host: str) -> str | None:
        """The address sentinel on `host` names as primary (None: no answer)."""
        client = self.sentinel(host)
        try:
            found = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER)  # type: ignore[no-untyped-call]
        except redis.RedisError:
            return None
        finally:
            client.close()
        return str(found[0]) if found else None

    def is_primary(self, host: str) -> bool:
        return _info(self.node(host)).get("role") == "master"

    def replication_lag(self) -> int:
        """Bytes the primary wrote that its replica has not applied (lost if it dies now)."""
        written = int(_info(self.node(self.primary_host)).get("master_repl_offset", 0))
        applied = int(_info(self.node(self.replica_host)).get("slave_repl_offset", 0))
        return max(0, written - applied)

    def env(self) -> dict[str, str]:
        sentinels = ",".join(f"{self.address(h)}:{SENTINEL_PORT}" for h in self.sentinel_hosts)
        return {
            "REDIS_SENTINELS": sentinels,
            "REDIS_SENTINEL_MASTER": MASTER,
            "REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD,
            "REDIS_URL": f"redis://:{VALKEY_PASSWORD}@primary-named-by-sentinel.invalid:1/0",
        }

    def start_system(self) -> None:
        """Gateways, workers and maintenance on their hosts, started side by side."""
        postgres, sim = self.cluster.postgres, self.cluster.sim
        assert postgres is not None and sim is not None
        database = postgres.create_database(f"sentinel_{uuid.uuid4().hex[:8]}")
        for name in (*GATEWAYS, *WORKERS):
            host = self.cluster.host(name)
            overrides = {**SETTINGS, "DATABASE_URL": database, "GATEWAY_HOST": host.address,
                         **self.env()}  # fmt: skip
            self.systems[name] = System("redis://unused.invalid:1", 0, sim.url,
                                        self.cluster.workdir / f"{name}-sentinel-{self.run}",
                                        overrides,
                                        host=host.address, prefix=host.exec_prefix)  # fmt: skip
        # One first, alone: it creates the new database's tables (two at once race there).
        self.systems[GATEWAYS[0]].start_gateway(GATEWAY_PORT)
        jobs: list[Any] = [lambda n=n: self.systems[n].start_gateway(GATEWAY_PORT)
                           for n in GATEWAYS[1:]]  # fmt: skip
        jobs += [lambda n=n, q=q: self.systems[n].start_worker(q, name=f"{n}-s")
                 for n, q in WORKERS.items()]  # fmt: skip
        jobs += [lambda n=n: self.systems[n].start_maintenance() for n in MAINTENANCE]
        # Started side by side from threads kept until stop(): a child's parent-death
        # signal (testbed's PDEATHSIG) fires when the *thread* that started it exits.
        self.pool = ThreadPoolExecutor(len(jobs))
        for started in [self.pool.submit(job) for job in jobs]:
            started.result()

    def gateway_url(self, host: str) -> str:
        return f"http://{self.address(host)}:{GATEWAY_PORT}"

    def stop(self) -> None:
        for system in self.systems.values():
            system.stop()
        if self.pool is not None:
            self.pool.shutdown()
        for role in reversed(self.roles):
            if f"{role}-{self.run}" in self.cluster.procs:
                self.cluster.retire(f"{role}-{self.run}")


def _info(client: redis.Redis) -> dict[str, Any]:
    try:
        return dict(client.info("replication"))
    except redis.RedisError:
        return {}
    finally:
        client.close()


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()
