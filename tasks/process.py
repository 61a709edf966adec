"""The runtime of this worker process: built once with its supervisor, closed at shutdown.

Kept apart from `tasks.runtime` (what a runtime is) and `tasks.supervision` (what watches
running tasks) so that neither imports the other.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_ready, worker_shutdown

from taskrecord.settings import get_settings
from tasks.gevent_mode import cooperative_sleeps
from tasks.runtime import WorkerRuntime, build_runtime
from tasks.supervision import Supervisor

log = logging.getLogger(__name__)

_lock = threading.Lock()
_runtime: WorkerRuntime | None = None
_runtime_pid: int | None = None


def get_runtime(celery: Celery) -> WorkerRuntime:
    """The runtime of this process (rebuilt after a fork, never shared across processes)."""
    global _runtime, _runtime_pid
    with _lock:
        if _runtime is None or _runtime_pid != os.getpid():
            runtime = build_runtime(get_settings(), celery)
            runtime.supervisor = Supervisor(runtime)
            runtime.supervisor.start()
            _runtime, _runtime_pid = runtime, os.getpid()
            log.info("worker runtime ready (pid %s)", _runtime_pid)
        return _runtime


def close_runtime() -> None:
    global _runtime
    with _lock:
        if _runtime is not None and _runtime_pid == os.getpid():
            _runtime.close()
        _runtime = None


@worker_init.connect  # type: ignore[untyped-decorator]
def _quiet_http_log(**_: Any) -> None:
    """httpx logs every request at INFO: one line per V1 call beside Celery's own two per
    task, and its formatting cost on every task. Failures are logged by the task."""
    for name in ("httpx", "httpx2"):
        logging.getLogger(name).setLevel(logging.WARNING)


_made_cooperative: list[str] = []


@worker_init.connect  # type: ignore[untyped-decorator]
def _cooperative_sleeps(**_: Any) -> None:
    """Before the consumer connects: its reconnects must not block the process (see
    tasks.gevent_mode). Logged once logging is set up (at worker_ready)."""
    _made_cooperative[:] = cooperative_sleeps()


@worker_init.connect  # type: ignore[untyped-decorator]
def _lower_priority(**_: Any) -> None:
    """Take WORKER_NICE before the pool starts. A task's latency is V1's minutes; a submit's
    is milliseconds: where both share cores the gateway (and maintenance) go first, and
    workers still get every cycle nobody else wants. Never raised back (not ours to undo)."""
    wanted = get_settings().worker_nice
    if wanted > os.getpriority(os.PRIO_PROCESS, 0):
        os.setpriority(os.PRIO_PROCESS, 0, wanted)
        log.info("worker niceness %s", wanted)
    if wanted > 0 and os.getsid(0) == os.getpid():
        _nice_own_autogroup(wanted)


def _nice_own_autogroup(wanted: int) -> None:
    """Linux's autogroup scheduling shares the CPU between sessions first and applies a
    process's niceness only inside its session: a worker started in a session of its own
    (setsid: a test harness, a process manager that detaches) at nice 19 would still get
    as much CPU as the gateway's whole session. Such a worker leads its session, so the
    session's group holds only it (and its pool's children): give the group the niceness
    too. Best effort: no autogroup (disabled, not Linux, cgroup scheduling) is no error."""
    try:
        with open("/proc/self/autogroup") as current:
            # "/autogroup-85 nice 0"
            if int(current.read().split()[-1]) >= wanted:
                return
        with open("/proc/self/autogroup", "w") as group:
            group.write(str(wanted))
        log.info("worker session's autogroup niceness %s", wanted)
    except (OSError, ValueError, IndexError):
        return


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_runtime(sender: Any = None, **_: Any) -> None:
    """Build the runtime as the worker starts, so its supervisor (revokes from the CLI and
    Flower, cancel messages) runs before the first task does."""
    get_runtime(sender.app)
    _one_result_backend(sender.app)
    if _made_cooperative:
        log.info("gevent sleep for %s", ", ".join(_made_cooperative))
    # What was imported and built by now lives as long as the process: out of the garbage
    # collector's full passes, which otherwise walk it all (~100 ms pauses seen mid-run,
    # holding up every task of the process; the gateway does the same).
    gc.freeze()


def _one_result_backend(app: Celery) -> None:
    """Celery keeps `app.backend` per thread (a `threading.local`), which gevent's patching
    makes per greenlet: every task built a result backend of its own (~5 % of a short
    task's CPU), only to ignore it. One for every task of the process instead."""
    backend = app.backend
    for task in app.tasks.values():
        task.backend = backend


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _close_runtime(**_: Any) -> None:
    close_runtime()
