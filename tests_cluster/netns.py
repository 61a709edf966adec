"""Hosts made of Linux network namespaces: one bridge, one veth pair per host, one /24.

Every name carries the test run's pid (`ocl<pid>-<host>`, bridge `oclb<pid>`, veth
`oc<pid>v<n>`), so a run deletes what an earlier run left behind (its pid is dead) without
touching a run still going. The bridge holds the subnet's `.1` in the root namespace: the
test itself is the "client" host and reaches every host through it; nothing is routed
beyond the bridge (no forwarding, no default route inside the namespaces).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from dataclasses import dataclass, field

PREFIX = "ocl"
_OWNED = re.compile(r"^(?:ocl|oclb|oc)(\d+)(?:-|v\d+$|$)")


def ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(name: str) -> bool:
    match = _OWNED.match(name)
    return match is not None and not _pid_alive(int(match.group(1)))


def remove_stale() -> list[str]:
    """Delete namespaces and links that a killed run left (its pid no longer runs)."""
    removed = []
    for line in ip("netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(PREFIX) and _stale(name):
            kill_namespace(name)
            ip("netns", "del", name, check=False)
            removed.append(name)
    for line in ip("-o", "link", "show").splitlines():
        parts = line.split(":")
        name = parts[1].strip().split("@")[0] if len(parts) > 1 else ""
        if name.startswith("oc") and _stale(name):
            ip("link", "del", name, check=False)
            removed.append(name)
    return removed


def namespace_pids(ns: str) -> list[int]:
    return [int(p) for p in ip("netns", "pids", ns, check=False).split()]


def kill_namespace(ns: str) -> list[int]:
    """SIGKILL every process in `ns` (a host losing its power)."""
    pids = namespace_pids(ns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def _free_subnet() -> str:
    """A 10.77.N.0/24 no route of this machine uses yet (two runs may overlap)."""
    routes = ip("-4", "route", "show")
    for n in [os.getpid() % 200 + 20, *range(20, 250)]:
        if f"10.77.{n}." not in routes:
            return f"10.77.{n}"
    raise RuntimeError("no free 10.77.N.0/24 subnet")


@dataclass
class Host:
    name: str
    ns: str
    address: str
    veth: str  # the root namespace's end, on the bridge: down = the host is cut off

    @property
    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns]

    def kill_all(self) -> list[int]:
        return kill_namespace(self.ns)

    def pids(self) -> list[int]:
        return namespace_pids(self.ns)

    def partition(self) -> None:
        ip("link", "set", self.veth, "down")

    def heal(self) -> None:
        ip("link", "set", self.veth, "up")


@dataclass
class Network:
    run: int = field(default_factory=os.getpid)
    subnet: str = ""
    hosts: dict[str, Host] = field(default_factory=dict)

    @property
    def bridge(self) -> str:
        return f"oclb{self.run}"

    @property
    def gateway_address(self) -> str:
        return f"{self.subnet}.1"

    def create(self) -> Network:
        remove_stale()
        self.subnet = _free_subnet()
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway_address}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        return self

    def add_host(self, name: str) -> Host:
        index = len(self.hosts) + 2
        host = Host(name, f"{PREFIX}{self.run}-{name}", f"{self.subnet}.{index}",
                    f"oc{self.run}v{index}")  # fmt: skip
        ip("netns", "add", host.ns)
        ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.ns)
        ip("link", "set", host.veth, "master", self.bridge, "up")
        inside = ["-n", host.ns]
        ip(*inside, "addr", "add", f"{host.address}/24", "dev", "eth0")
        ip(*inside, "link", "set", "eth0", "up")
        ip(*inside, "link", "set", "lo", "up")
        self.hosts[name] = host
        return host

    def destroy(self) -> None:
        for host in self.hosts.values():
            host.kill_all()
            ip("netns", "del", host.ns, check=False)
            ip("link", "del", host.veth, check=False)
        ip("link", "del", self.bridge, check=False)
        self.hosts.clear()
