"""Where the launcher keeps its files: everything lives under the data directory (var/)."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

# AF_UNIX paths are limited to 108 bytes on Linux (104 on macOS); keep a margin.
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class Layout:
    """Absolute paths used by one launcher run."""

    root: Path  # project root: the working directory of every program
    var_dir: Path

    @classmethod
    def create(cls, root: Path, var_dir: str) -> Layout:
        # A relative VAR_DIR is taken from the project root, the directory every program
        # runs in, so the launcher and the programs agree on where the data is.
        root = root.resolve()
        path = Path(var_dir).expanduser()
        return cls(root=root, var_dir=(path if path.is_absolute() else root / path).resolve())

    def make_dirs(self) -> None:
        for directory in (self.var_dir, self.log_dir, self.valkey_dir):
            directory.mkdir(parents=True, exist_ok=True)

    @property
    def log_dir(self) -> Path:
        return self.var_dir / "log"

    @property
    def valkey_dir(self) -> Path:
        return self.var_dir / "valkey"

    @property
    def valkey_port_file(self) -> Path:
        return self.var_dir / "valkey.port"

    @property
    def conf_file(self) -> Path:
        return self.var_dir / "supervisord.conf"

    @property
    def pid_file(self) -> Path:
        return self.var_dir / "supervisord.pid"

    @property
    def supervisord_log(self) -> Path:
        return self.log_dir / "supervisord.log"

    @property
    def socket_file(self) -> Path:
        socket = self.var_dir / "supervisor.sock"
        if len(str(socket)) <= _MAX_SOCKET_PATH:
            return socket
        # A deep data directory cannot hold the socket; use a short path that is still
        # unique to it (the socket is created with mode 0700 either way).
        digest = hashlib.sha256(str(self.var_dir).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"openclaw-supervisor-{digest}.sock"

    def log_file(self, program: str) -> Path:
        return self.log_dir / f"{program}.log"
