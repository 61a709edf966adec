"""`make run`: the whole system on one machine under one supervisord; Ctrl+C stops it all.

    python -m deploy.launcher

Starts an embedded Valkey unless REDIS_URL is set and the V1 simulator unless V1_URL is set,
then the gateway, the Celery workers (short and long ones added and drained by the
`autoscaler` program, deploy/autoscaler.py), the maintenance loop and Flower, waits until
the gateway's /readyz answers, and prints where everything is. supervisord restarts any
program that dies; on SIGINT / SIGTERM the launcher stops supervisord, which stops the
programs in reverse start order (workers drain while Redis and V1 still run).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import httpx
import redis
from pydantic import ValidationError

from deploy.banner import gateway_url, ready_banner, redact_url
from deploy.embedded_valkey import wait_for_redis
from deploy.endpoints import Endpoints, port_conflicts, resolve_endpoints
from deploy.errors import LaunchError
from deploy.layout import Layout
from deploy.programs import plan_programs, secret_environment, shared_environment
from deploy.supervisor_conf import render_supervisord_conf
from deploy.supervisor_process import STOP_SIGNALS, Supervisord, refuse_if_running
from taskrecord.redis_client import ping as ping_redis
from taskrecord.settings import Settings, get_settings

logger = logging.getLogger("deploy.launcher")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOG_TAIL_LINES = 40


class ShutdownRequested(BaseException):
    """The first SIGINT / SIGTERM / SIGHUP: leave whatever the launcher is doing and stop.

    A BaseException, like KeyboardInterrupt, so no `except Exception` swallows it."""


class StartupFailed(Exception):
    """The system did not come up; `log` names the program whose log tells why."""

    def __init__(self, message: str, log: str | None = None):
        super().__init__(message)
        self.log = log


class StopSignals:
    """First stop signal: raise ShutdownRequested. Any later one: ask for a forced stop."""

    def __init__(self) -> None:
        self.stopping = False
        self.forced = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        for signum in STOP_SIGNALS:
            previous = signal.signal(signum, self._handle)
            if previous is signal.SIG_IGN and signum != signal.SIGINT:
                signal.signal(signum, previous)  # e.g. SIGHUP under nohup: keep ignoring it
            self._previous[signum] = previous
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            self.forced = True
            return
        self.stopping = True
        raise ShutdownRequested(signal.Signals(signum).name)

    def begin_stop(self) -> None:
        self.stopping = True

    def force_requested(self) -> bool:
        return self.forced


def restore_interrupt() -> None:
    """Ctrl+C (SIGINT) always stops the launcher, even when started with SIGINT ignored.

    A non-interactive shell starts background jobs (`make run &` in a script) with SIGINT
    ignored, and Python then installs no KeyboardInterrupt handler of its own."""
    signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: Sequence[str] | None = None) -> int:
    restore_interrupt()
    parser = argparse.ArgumentParser(
        prog="python -m deploy.launcher",
        description="Run OpenClaw V2 on this machine (what `make run` does).",
    )
    parser.add_argument(
        "--project-root",
        type=Path,
        default=PROJECT_ROOT,
        help="directory the programs run in (default: this checkout)",
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=60.0,
        help="seconds to wait for the gateway's /readyz (default: 60)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per /readyz poll otherwise
    try:
        settings = get_settings()
    except ValidationError as exc:
        logger.error("make run: the settings are not valid:\n%s", exc)
        return 1
    try:
        return run(settings, args.project_root, args.ready_timeout)
    except LaunchError as exc:
        logger.error("make run: %s", exc)
        return 1
    except ShutdownRequested:
        return 0
    except KeyboardInterrupt:  # Ctrl+C before anything was started
        return 130


def run(settings: Settings, root: Path, ready_timeout: float) -> int:
    layout = Layout.create(root, settings.var_dir)
    layout.make_dirs()
    refuse_if_running(layout)
    endpoints = resolve_endpoints(settings, layout)
    problems = port_conflicts(settings, endpoints)
    if problems:
        raise LaunchError("cannot start:\n  " + "\n  ".join(problems))
    programs = plan_programs(settings, endpoints, layout, sys.executable)
    layout.conf_file.write_text(
        render_supervisord_conf(programs, shared_environment(settings, endpoints, layout), layout),
        encoding="utf-8",
    )
    supervisord = Supervisord(layout, env={**os.environ, **secret_environment(settings)})
    # supervisord stops the programs one after the other, each within its stopwaitsecs.
    stop_timeout = sum(program.stopwaitsecs for program in programs) + 15.0

    with StopSignals() as signals:
        try:
            _announce(endpoints, [program.name for program in programs])
            supervisord.start()
            wait_until_up(settings, endpoints, supervisord, ready_timeout)
            print(ready_banner(settings, endpoints, layout, _supervisorctl()), flush=True)
            code = supervisord.wait()
            logger.error("supervisord exited on its own (code %s); see %s", code, layout.log_dir)
            return 1
        except ShutdownRequested as exc:
            logger.info("%s: stopping OpenClaw V2", exc)
            return 0
        except StartupFailed as exc:
            signals.begin_stop()
            logger.error("make run: the system did not come up: %s", exc)
            _report_failure(supervisord, layout, exc.log)
            return 1
        finally:
            signals.begin_stop()
            if supervisord.exit_code() is None and supervisord.pid is not None:
                logger.info(
                    "Waiting for the programs to stop (workers finish their tasks for up to "
                    "30 s); Ctrl+C again kills them at once."
                )
            supervisord.stop(stop_timeout, signals.force_requested)
            logger.info("Stopped.")


def wait_until_up(
    settings: Settings, endpoints: Endpoints, supervisord: Supervisord, timeout: float
) -> None:
    """Return once Redis answers PING and the gateway's /readyz answers 200."""
    deadline = time.monotonic() + timeout
    redis_source = "valkey" if endpoints.embedded_valkey else None
    while True:
        _check_alive(supervisord)
        try:
            if settings.redis_sentinels:
                ping_redis(settings, timeout=1.0)  # the primary they name, not REDIS_URL's host
            else:
                wait_for_redis(endpoints.redis_url, timeout=1.0)
            break
        except (TimeoutError, RuntimeError, redis.RedisError):
            if time.monotonic() > deadline:
                # Our own message: the library's would print the URL, password included.
                raise StartupFailed(
                    f"Redis at {redact_url(endpoints.redis_url)} did not answer PING",
                    log=redis_source,
                ) from None
    ready_url = f"{gateway_url(settings)}/readyz"
    # trust_env=False: an HTTP(S)_PROXY in the environment must not capture loopback calls.
    with httpx.Client(trust_env=False, timeout=2.0) as client:
        while True:
            _check_alive(supervisord)
            try:
                if client.get(ready_url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise StartupFailed(
                    f"{ready_url} did not answer 200 within {timeout:.0f} s", log="gateway"
                )
            time.sleep(0.25)


def _check_alive(supervisord: Supervisord) -> None:
    code = supervisord.exit_code()
    if code is not None:
        raise StartupFailed(f"supervisord exited with code {code}")


def _announce(endpoints: Endpoints, names: list[str]) -> None:
    if endpoints.embedded_valkey:
        logger.info("REDIS_URL is unset: starting an embedded Valkey at %s", endpoints.redis_url)
    if endpoints.simulated_v1:
        logger.info(
            "V1_URL is unset: starting the V1 SIMULATOR at %s (not a real OpenClaw V1)",
            endpoints.v1_url,
        )
    logger.info("Starting %s under supervisord...", ", ".join(names))


def _report_failure(supervisord: Supervisord, layout: Layout, log: str | None) -> None:
    for name in dict.fromkeys([log, "gateway"]):
        if name is not None:
            _print_tail(layout.log_file(name))
    if supervisord.exit_code() is None:
        try:
            status = supervisord.ctl("status").stdout
        except Exception as exc:  # diagnostics only: never hide the original failure
            status = f"(supervisorctl failed: {exc})"
        print(f"--- supervisorctl status ---\n{status.rstrip()}", flush=True)
    else:
        _print_tail(layout.supervisord_log)


def _print_tail(path: Path) -> None:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        print(f"--- {path}: no log ---", flush=True)
        return
    print(f"--- last {LOG_TAIL_LINES} lines of {path} ---", flush=True)
    print("\n".join(lines[-LOG_TAIL_LINES:]), flush=True)


def _supervisorctl() -> str:
    beside = Path(sys.executable).parent / "supervisorctl"
    if not beside.exists():
        return "supervisorctl"
    try:
        return str(beside.relative_to(Path.cwd()))
    except ValueError:
        return str(beside)


if __name__ == "__main__":
    sys.exit(main())
