"""One ordered SQL writer per worker process, never waited for.

Every SQL copy of the process's tasks goes through one queue (a lane), drained by one
greenlet that runs whatever has piled up on one thread of gevent's pool per batch (not one
thread hand-off per write). So:

- copies land in the order they were queued: a task's claim-time "attempt" copy still
  lands before its end's copy;
- that claim copy is held back for up to HOLD_SECONDS: a task that ends meanwhile (most
  short ones) writes both in one transaction and its row once;
- nobody waits for a copy: a batch gathers what arrives within BATCH_WINDOW (one
  transaction and one thread trip for several tasks rather than one per task); a run ends
  as soon as its live record has;
- one writer thread, not one per concurrent write: no contention for SQLite's lock or
  for the GIL between writers (four lanes cost ~9 % more worker CPU per task than one).

Nothing is lost by not waiting: a failed copy leaves its task to maintenance
(`taskrecord.sql_pending`), and so does a crash before an end's copy landed, since the end's
own script put the task in SQL_PENDING, due after GRACE_SECONDS; the writer drops that entry
once the copy landed (one call per batch).

Without gevent (no patched socket: a solo worker, a test) each copy is written in place.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from taskrecord.live import LiveStore
from taskrecord.mirror import SqlCopy, mirror_live, row_from_live
from taskrecord.record import TaskRecord
from taskrecord.sql_pending import forget_copied, write_behind, write_failed
from taskrecord.store.repo import TaskStore
from tasks.gevent_mode import gevent_patched

log = logging.getLogger(__name__)

# Copies one batch hands to the thread at most; a full batch starts at once.
BATCH = 64
# How long a batch waits for company after its first copy arrived.
BATCH_WINDOW = 0.02
# How long a claim-time copy waits for its own task's end before it is written alone
# (the SQL row shows `running` this much later; the live record shows it at once).
HOLD_SECONDS = 0.5
# How long an end's copy may take to land before maintenance makes it instead (it is owed
# from the end on: a worker killed meanwhile loses nothing).
GRACE_SECONDS = 30.0


def _run_batch(store: TaskStore, copies: list[SqlCopy]) -> list[BaseException | None]:
    """On the pool's thread: each copy's failure, or None. The lot goes in one
    transaction; if that fails, one by one."""
    if len(copies) > 1:
        try:
            rows = [(row_from_live(c.live, c.partial), c.detail) for c in copies]
            store.upsert_many([(row, detail) for row, detail in rows if row])
            return [None] * len(copies)
        except Exception:  # each copy's own outcome below
            log.debug("batched SQL write failed; writing one by one")
    out: list[BaseException | None] = []
    for c in copies:
        try:
            mirror_live(store, c.task_id, c.live, c.partial, c.detail)
            out.append(None)
        except Exception as exc:  # left to maintenance by the lane
            out.append(exc)
    return out


class _Lane:
    """One queue, drained by one greenlet: its copies land in order, a batch per thread
    trip. `landed` gets each batch's written copies; `failed` each failed one."""

    def __init__(
        self,
        store: TaskStore,
        landed: Callable[[list[SqlCopy]], None],
        failed: Callable[[SqlCopy, BaseException], None],
    ) -> None:
        from gevent.event import Event

        self.store = store
        self.copies: list[SqlCopy] = []
        self.wake = Event()
        self.full = Event()  # a batch's worth is queued, or someone waits (close)
        self.greenlet: Any = None
        self.busy = False  # a batch is on the thread
        self.closing = False  # what is queued goes at once
        self.landed = landed
        self.failed = failed

    def queue(self, copy: SqlCopy) -> None:
        self.copies.append(copy)
        if self.greenlet is None or self.greenlet.dead:
            import gevent

            self.greenlet = gevent.spawn(self._drain)
        if len(self.copies) >= BATCH:
            self.full.set()
        self.wake.set()

    def _drain(self) -> None:
        import gevent

        pool = gevent.get_hub().threadpool
        while True:
            self.wake.wait()
            self.wake.clear()
            # Every batch waits for company, the next one too: under load the thread is
            # slow to get the GIL back, and going on at once made batches of 2-3 tasks.
            if not self.full.is_set() and not self.closing:
                self.full.wait(BATCH_WINDOW)
            self.full.clear()
            batch, self.copies = self.copies[:BATCH], self.copies[BATCH:]
            if self.copies:
                self.wake.set()
                if len(self.copies) >= BATCH:
                    self.full.set()
            if not batch:
                continue
            self.busy = True
            try:
                outcomes = pool.apply(_run_batch, (self.store, batch))
                for copy, exc in zip(batch, outcomes, strict=True):
                    if exc is not None:
                        self.failed(copy, exc)
                self.landed([c for c, e in zip(batch, outcomes, strict=True) if e is None])
            finally:
                self.busy = False

    def close(self, timeout: float) -> None:
        """Let what is queued land (up to `timeout`), then stop."""
        if self.greenlet is None:
            return
        deadline = time.monotonic() + timeout
        self.closing = True
        self.full.set()
        while (self.copies or self.busy) and not self.greenlet.dead:
            if time.monotonic() > deadline:
                break
            import gevent

            gevent.sleep(0.01)
        self.greenlet.kill(block=True, timeout=max(deadline - time.monotonic(), 0.1))


class SqlWriter:
    """One lane for the process: every copy in the order it was queued (so each task's
    in its own order), a batch per thread trip. The `SqlCopier` of the worker's
    `TaskControl`."""

    grace = GRACE_SECONDS

    def __init__(self, live: LiveStore, store: TaskStore) -> None:
        self._live = live
        self._store = store
        self._threaded = gevent_patched()
        self._lane = _Lane(store, self._landed, self._failed) if self._threaded else None
        # Claim-time copies held back, by task id, in the order they were held.
        self._held: dict[str, tuple[float, SqlCopy]] = {}
        self._releaser: Any = None

    def _landed(self, copies: list[SqlCopy]) -> None:
        owed = [(c.task_id, c.pending) for c in copies if c.pending is not None]
        if owed:
            forget_copied(self._live, owed)

    def _failed(self, copy: SqlCopy, exc: BaseException) -> None:
        try:
            write_failed(self._live.redis, copy.task_id, exc)
        except Exception:  # Redis away too: its SQL_PENDING entry (an end's) still stands
            log.exception("recording a failed SQL write failed")

    def _queue(self, copy: SqlCopy) -> None:
        assert self._lane is not None  # only with gevent (`_threaded`)
        self._lane.queue(copy)

    def _release(self, task_id: str) -> None:
        """Queue the task's held copy (if any) now: before any later copy of that task."""
        held = self._held.pop(task_id, None)
        if held is not None:
            self._queue(held[1])

    def _release_due(self) -> None:
        """One greenlet for all held copies: each is queued HOLD_SECONDS after it was held."""
        import gevent

        while self._held:
            task_id, (due, _copy) = next(iter(self._held.items()))
            wait = due - time.monotonic()
            if wait > 0:
                gevent.sleep(wait)
            else:
                self._release(task_id)

    def copy(self, copy: SqlCopy) -> None:
        """Queue the task's copy after its earlier ones; `copy.pending`: its SQL_PENDING
        score, dropped once the copy landed."""
        if not self._threaded:
            if write_behind(self._live.redis, self._store, copy.task_id, copy.live,
                            copy.partial, copy.detail):  # fmt: skip
                self._landed([copy])
            return
        self._release(copy.task_id)
        self._queue(copy)

    def hold(self, task_id: str, record: TaskRecord, detail: str) -> None:
        """A claim's copy: held back for HOLD_SECONDS, or until the task's next copy."""
        copy = SqlCopy(task_id, record, None, detail)
        if not self._threaded:
            self.copy(copy)  # written in place: nothing to hold it for
            return
        self._release(task_id)  # an earlier held copy of the same task lands first
        self._held[task_id] = (time.monotonic() + HOLD_SECONDS, copy)
        if self._releaser is None or self._releaser.dead:
            import gevent

            self._releaser = gevent.spawn(self._release_due)

    def close(self, timeout: float = 5.0) -> None:
        for task_id in list(self._held):
            self._release(task_id)
        if self._releaser is not None:
            self._releaser.kill(block=False)
        if self._lane is not None:
            self._lane.close(timeout)
