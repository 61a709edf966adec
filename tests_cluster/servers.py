"""The project's own server helpers, run inside a host's namespace and bound to its address.

Each is the testbed/deploy class with three changes: the command runs under
`ip netns exec <host>`, it listens on the host's address instead of 127.0.0.1, and it can be
killed or stopped and started again on the same data (the failure scenarios).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.embedded_valkey import EmbeddedValkey
from testbed.postgres import SUPERUSER, EmbeddedPostgres, _stop_with_parent
from testbed.process import wait_until
from v1sim.process import SimulatorProcess

VALKEY_PORT = 6379
POSTGRES_PORT = 5432
V1_PORT = 18790
# The cluster's Valkey asks for a password, as a deployment's would (REDIS_URL carries it).
VALKEY_PASSWORD = "cluster-valkey-password"


@dataclass
class NetnsValkey(EmbeddedValkey):
    """Valkey with AOF (`appendfsync everysec`, EmbeddedValkey's choice) on the data host."""

    host: str = "127.0.0.1"
    prefix: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://:{VALKEY_PASSWORD}@{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        command = super().command()
        command[command.index("--bind") + 1] = self.host
        return [*self.prefix, *command, "--requirepass", VALKEY_PASSWORD]

    def kill(self) -> None:
        """SIGKILL: no SHUTDOWN, no last AOF flush; what is in the file is what survives."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def restart(self, timeout: float = 30.0) -> None:
        """Start again on the same port and folder (replays the AOF)."""
        self.start(timeout)


@dataclass
class NetnsPostgres(EmbeddedPostgres):
    """PostgreSQL on the data host, run as the unprivileged user testbed creates; hosts of
    the cluster's subnet may connect (trust: the subnet exists only inside this test)."""

    host: str = "127.0.0.1"
    netns: str = ""
    subnet: str = "127.0.0.1/32"
    _command: list[str] = field(default_factory=list, init=False)

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def _conninfo(self, database: str) -> str:
        where = f"host={self.host} port={self.port}"
        return f"{where} user={SUPERUSER} dbname={database} connect_timeout=5"

    def _server_command(self, bin_dir: Path, data: Path) -> list[str]:
        command = super()._server_command(bin_dir, data)
        command[command.index("listen_addresses=127.0.0.1")] = f"listen_addresses={self.host}"
        hba = data / "pg_hba.conf"
        line = f"host all all {self.subnet} trust\n"
        if line not in hba.read_text():
            with hba.open("a") as out:
                out.write(line)
        self._command = command
        return command

    def _popen_as_owner(self, command: list[str]) -> subprocess.Popen[bytes]:
        """`ip netns exec` needs root: enter the namespace as root, then drop to the owner
        with setpriv (which also re-arms the parent-death signal the uid change clears)."""
        owner = self._owner()
        drop = ["setpriv", f"--reuid={owner.uid}", f"--regid={owner.gid}", "--clear-groups",
                "--pdeathsig=INT", "--"] if owner.uid is not None else []  # fmt: skip
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                ["ip", "netns", "exec", self.netns, *drop, *command],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                start_new_session=True,
                preexec_fn=_stop_with_parent,
                env=owner.env,
            )

    def halt(self, timeout: float = 30.0) -> None:
        """A fast shutdown that keeps the data folder (an outage, not the end)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout)

    def resume(self, timeout: float = 60.0) -> None:
        self.process = self._popen_as_owner(self._command)
        wait_until(self._answers, timeout, 0.1, "PostgreSQL to answer again")


class NetnsSimulator(SimulatorProcess):
    """The V1 simulator on its own host. It listens on all of that host's addresses (its
    own address and its namespace's loopback, nothing else exists there): its control
    endpoints answer local callers only, so the records that count V1 calls are read by a
    client run inside the host (`requests`)."""

    def __init__(self, *, prefix: list[str], address: str, **kwargs: Any) -> None:
        super().__init__(host="0.0.0.0", **kwargs)  # all of its own namespace's addresses
        self.prefix = prefix
        self.address = address

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"

    def _command(self) -> list[str]:
        # setpriv: SIGTERM when the test run dies (SimulatorProcess itself sets none).
        return [*self.prefix, "setpriv", "--pdeathsig=TERM", "--", *super()._command()]

    def requests(self, tag: str | None = None) -> list[dict[str, Any]]:
        query = f"?tag={tag}" if tag is not None else ""
        code = "import sys, httpx; sys.stdout.write(httpx.get(sys.argv[1], timeout=30).text)"
        url = f"http://127.0.0.1:{self.port}/_sim/requests{query}"
        done = subprocess.run([*self.prefix, sys.executable, "-c", code, url],
                              capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
        records: list[dict[str, Any]] = json.loads(done.stdout)["requests"]
        return records
