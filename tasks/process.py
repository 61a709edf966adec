"""The runtime of this worker process: built once with its supervisor, closed at shutdown.

Kept apart from `tasks.runtime` (what a runtime is) and `tasks.supervision` (what watches
running tasks) so that neither imports the other.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_ready, worker_shutdown

from taskrecord.settings import get_settings
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
    logging.getLogger("httpx").setLevel(logging.WARNING)


@worker_init.connect  # type: ignore[untyped-decorator]
def _lower_priority(**_: Any) -> None:
    """Take WORKER_NICE before the pool starts. A task's latency is V1's minutes; a submit's
    is milliseconds: where both share cores the gateway (and maintenance) go first, and
    workers still get every cycle nobody else wants. Never raised back (not ours to undo)."""
    wanted = get_settings().worker_nice
    if wanted > os.getpriority(os.PRIO_PROCESS, 0):
        os.setpriority(os.PRIO_PROCESS, 0, wanted)
        log.info("worker niceness %s", wanted)


@worker_ready.connect  # type: ignore[untyped-decorator]
def _start_runtime(sender: Any = None, **_: Any) -> None:
    """Build the runtime as the worker starts, so its supervisor (revokes from the CLI and
    Flower, cancel messages) runs before the first task does."""
    get_runtime(sender.app)


@worker_shutdown.connect  # type: ignore[untyped-decorator]
def _close_runtime(**_: Any) -> None:
    close_runtime()
