"""One ordered SQL writer per worker process.

Every SQL write of the process's tasks goes through one queue (a lane), drained by one
greenlet that runs whatever has piled up on one thread of gevent's pool per batch (not one
thread hand-off per write). So:

- writes land in the order they were queued: a task's claim-time "attempt" copy, queued
  without waiting (it no longer holds up the V1 call), still lands before its finish copy;
- that copy is held back for up to HOLD_SECONDS: a task that ends meanwhile (most short
  ones) writes both in one transaction and its row once, instead of a transaction each;
- one writer thread, not one per concurrent write: no contention for SQLite's lock or
  for the GIL between writers (four lanes cost ~9 % more worker CPU per task than one,
  alternating runs of 2,000-4,000 instant tasks at -c 50 and -c 500, and were no faster);
- a finish waits for its own write (and so for every write queued before it).

Without gevent (no patched socket: a solo worker, a test) each write runs in place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from functools import partial as partial_fn
from typing import Any

import redis

from taskrecord.mirror import mirror_live, row_from_live
from taskrecord.record import TaskRecord
from taskrecord.sql_pending import write_behind, write_failed
from taskrecord.store.repo import TaskStore
from tasks.gevent_mode import gevent_patched

log = logging.getLogger(__name__)

# Writes one batch hands to the thread at most (a finish waits at most this many ahead).
BATCH = 64
# How long writes nobody waits for (a claim's "attempt" copy) may wait for company: a short
# task's finish then lands in the same batch, one row upsert and one thread trip instead of
# two. A write somebody waits for (a finish) starts the batch at once.
BEHIND_WINDOW = 0.05

# How long a claim-time copy waits for its own task's finish before it is written alone
# (the SQL row shows `running` this much later; the live record shows it at once).
HOLD_SECONDS = 0.5

Job = tuple[Callable[..., Any], tuple[Any, ...], Any, Callable[[BaseException], None] | None]


def _run_batch(jobs: list[Job]) -> list[tuple[bool, Any]]:
    """On the pool's thread: each job's result, or the exception it raised. Several task
    copies (`mirror_live`) go in one transaction; if that fails, one by one."""
    if len(jobs) > 1 and all(fn is mirror_live for fn, _, _, _ in jobs):
        try:
            # args: store, task_id, live, partial, detail (as `mirror_live` takes them)
            writes = [(row_from_live(args[2], args[3]), args[4]) for _, args, _, _ in jobs]
            store: TaskStore = jobs[0][1][0]
            store.upsert_many([(row, detail) for row, detail in writes if row is not None])
            return [(True, None)] * len(jobs)
        except Exception:  # each job's own outcome below
            log.debug("batched SQL write failed; writing one by one")
    out: list[tuple[bool, Any]] = []
    for fn, args, _, _ in jobs:
        try:
            out.append((True, fn(*args)))
        except Exception as exc:  # handed back to whoever queued it
            out.append((False, exc))
    return out


class _Lane:
    """One queue, drained by one greenlet: its jobs run in order, a batch per thread trip."""

    def __init__(self) -> None:
        from gevent.event import Event

        self.jobs: list[Job] = []
        self.wake = Event()
        self.waited = Event()  # a queued job has somebody waiting for it
        self.greenlet: Any = None

    def queue(self, job: Job) -> None:
        self.jobs.append(job)
        if self.greenlet is None or self.greenlet.dead:
            import gevent

            self.greenlet = gevent.spawn(self._drain)
        if job[2] is not None:
            self.waited.set()
        self.wake.set()

    def _drain(self) -> None:
        import gevent

        pool = gevent.get_hub().threadpool
        while True:
            self.wake.wait()
            self.wake.clear()
            if not self.waited.is_set():
                self.waited.wait(BEHIND_WINDOW)
            self.waited.clear()
            while self.jobs:
                batch, self.jobs = self.jobs[:BATCH], self.jobs[BATCH:]
                try:
                    results = pool.apply(_run_batch, (batch,))
                except BaseException as exc:  # killed at shutdown: nobody waits forever
                    for _, _, done, _ in batch:
                        if done is not None:
                            done.set_exception(exc)
                    raise
                for (_, _, done, failed), (ok, value) in zip(batch, results, strict=True):
                    if done is not None and ok:
                        done.set(value)
                    elif done is not None:
                        done.set_exception(value)
                    elif not ok and failed is not None:
                        try:
                            failed(value)
                        except Exception:  # Redis away too: the write is lost, the run is not
                            log.exception("recording a failed SQL write failed")

    def close(self, timeout: float) -> None:
        """Let what is queued land (up to `timeout`), then stop."""
        if self.greenlet is None:
            return
        if not self.greenlet.dead and self.jobs:
            from gevent.event import AsyncResult

            done = AsyncResult()
            self.queue((lambda: None, (), done, None))
            done.wait(timeout)
        self.greenlet.kill(block=True, timeout=timeout)


class SqlWriter:
    """One lane for the process: every write in the order it was queued (so each task's
    in its own order), a batch per thread trip."""

    def __init__(self) -> None:
        self._threaded = gevent_patched()
        self._writes = _Lane() if self._threaded else None
        # Claim-time copies held back, by task id, in the order they were held.
        self._held: dict[str, tuple[float, Job]] = {}
        self._releaser: Any = None

    def _queue(self, job: Job) -> None:
        assert self._writes is not None  # only with gevent (`_threaded`)
        self._writes.queue(job)

    def _release(self, task_id: str) -> None:
        """Queue the task's held copy (if any) now: before any later write of that task."""
        held = self._held.pop(task_id, None)
        if held is not None:
            self._queue(held[1])

    def _release_due(self) -> None:
        """One greenlet for all held copies: each is queued HOLD_SECONDS after it was held."""
        import gevent

        while self._held:
            task_id, (due, _job) = next(iter(self._held.items()))
            wait = due - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
            else:
                self._release(task_id)

    def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run `fn(store, task_id, ...)` after every write of that task queued before it;
        its result, or it raises. The `sql` of `TaskControl` and `write_behind`."""
        if not self._threaded:
            return fn(*args)
        from gevent.event import AsyncResult

        done = AsyncResult()
        task_id = str(args[1]) if len(args) > 1 else ""
        self._release(task_id)
        self._queue((fn, args, done, None))
        return done.get()

    def behind(
        self,
        client: redis.Redis,
        store: TaskStore,
        task_id: str,
        live: Mapping[str, str] | TaskRecord,
        partial: str | None,
        detail: str | None,
    ) -> None:
        """`write_behind` without waiting: queued now, in order; a failure is left to
        maintenance (`taskrecord.sql_pending`) as a waited-for one is."""
        if not self._threaded:
            write_behind(client, store, task_id, live, partial, detail)
            return
        args = (store, task_id, live, partial, detail)
        failed = partial_fn(write_failed, client, task_id)
        self._release(task_id)  # an earlier held copy of the same task lands first
        self._held[task_id] = (time.monotonic() + HOLD_SECONDS, (mirror_live, args, None, failed))
        if self._releaser is None or self._releaser.dead:
            import gevent

            self._releaser = gevent.spawn(self._release_due)

    def close(self, timeout: float = 5.0) -> None:
        for task_id in list(self._held):
            self._release(task_id)
        if self._releaser is not None:
            self._releaser.kill(block=False)
        if self._writes is not None:
            self._writes.close(timeout)
