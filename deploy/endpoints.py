"""Decide where Redis and V1 are: the configured ones, or an embedded Valkey / the simulator."""

from __future__ import annotations

import contextlib
import logging
import socket
from dataclasses import dataclass

from deploy.embedded_valkey import free_port
from deploy.layout import Layout
from taskrecord.settings import Settings

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class Endpoints:
    """The Redis and V1 the programs use, and which of them the launcher must run itself."""

    redis_url: str
    v1_url: str
    valkey_port: int | None = None  # set: run an embedded Valkey on this port
    simulator_port: int | None = None  # set: run the V1 simulator on this port

    @property
    def embedded_valkey(self) -> bool:
        return self.valkey_port is not None

    @property
    def simulated_v1(self) -> bool:
        return self.simulator_port is not None


def resolve_endpoints(settings: Settings, layout: Layout) -> Endpoints:
    """REDIS_URL / V1_URL when set; otherwise an embedded Valkey and the V1 simulator."""
    valkey_port = None if settings.redis_url else embedded_valkey_port(layout)
    simulator_port = None if settings.v1_url else settings.simulator_port
    return Endpoints(
        redis_url=settings.redis_url or f"redis://{LOOPBACK}:{valkey_port}/0",
        v1_url=settings.v1_url or f"http://{LOOPBACK}:{simulator_port}",
        valkey_port=valkey_port,
        simulator_port=simulator_port,
    )


def embedded_valkey_port(layout: Layout) -> int:
    """The embedded Valkey's port: the one remembered in var/valkey.port when still free.

    Keeping the port across restarts keeps a REDIS_URL someone copied from the banner valid
    (the data itself is in var/valkey whatever the port).
    """
    remembered = _read_port(layout)
    if remembered is not None:
        if port_is_free(LOOPBACK, remembered):
            return remembered
        logger.warning(
            "Port %s remembered in %s is taken now; the embedded Valkey moves to a new port",
            remembered,
            layout.valkey_port_file,
        )
    port = free_port()
    layout.valkey_port_file.write_text(f"{port}\n", encoding="utf-8")
    return port


def _read_port(layout: Layout) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        port = int(layout.valkey_port_file.read_text(encoding="utf-8").strip())
        if 0 < port < 65536:
            return port
    return None


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (as the servers do, with SO_REUSEADDR)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror:
        return False
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        # SO_REUSEADDR so a port in TIME_WAIT from a previous run counts as free: uvicorn,
        # Flower and Valkey set it too, so they can bind it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError:
            return False
    return True


def port_conflicts(settings: Settings, endpoints: Endpoints) -> list[str]:
    """One message per port the system needs that is taken or claimed twice."""
    wanted: list[tuple[str, str, int]] = [
        ("gateway (GATEWAY_PORT)", settings.gateway_host, settings.gateway_port),
        ("Flower (FLOWER_PORT)", LOOPBACK, settings.flower_port),
    ]
    if endpoints.simulator_port is not None:
        wanted.append(("V1 simulator (SIMULATOR_PORT)", LOOPBACK, endpoints.simulator_port))
    if endpoints.valkey_port is not None:
        wanted.append(("embedded Valkey", LOOPBACK, endpoints.valkey_port))
    problems: list[str] = []
    owners: dict[int, str] = {}
    for name, host, port in wanted:
        if port in owners:
            problems.append(f"{name} and {owners[port]} both want port {port}")
            continue
        owners[port] = name
        if not port_is_free(host, port):
            problems.append(
                f"port {port} for the {name} is already in use on {host}: stop what holds it "
                f"or choose another port"
            )
    return problems
