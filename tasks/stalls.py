"""Stall detection: a running task V1 has sent no output for STALL_SECONDS is stopped and
ends `failed` with type `stalled` (its V1 call closed, its partial output kept).

Separate from the time limits (which end a task `timed_out` however busy it is): a stall is a
run that stopped moving. Output is what reaches the task's partial text (`lua/progress.lua`
appends every content delta there); the deadline watcher reads its length for all running
tasks of the process in one pipelined round every `interval`. V1's first chunk (the role
only) does not count: V1 sends it at once, before the model has done anything, so a run whose
model hangs after it (what `[sim:delay=N]` plays) is exactly a stall.

Not retried automatically: the agent may have acted, or be acting, without streaming text.
The user or an operator retries it (`POST /v1/tasks/{id}/retry`, the bulk retry, or
`celery -A tasks retry --state failed --error-type stalled`).
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from taskrecord import keys
from tasks.errors import TaskRunError
from tasks.running import RunningTask

# Checked at about a quarter of STALL_SECONDS (a stall is seen at most that much late), but
# not more often than the watcher ticks nor less often than every 15 s.
MIN_INTERVAL = 0.5
MAX_INTERVAL = 15.0


class TaskStalled(TaskRunError):
    """No output from V1 for STALL_SECONDS. Not `retryable`: see the module's docstring."""

    kind = "stalled"


class StallCheck:
    def __init__(self, client: redis.Redis, stall_seconds: float) -> None:
        self.client = client
        self.stall_seconds = stall_seconds
        self.interval = min(max(stall_seconds / 4, MIN_INTERVAL), MAX_INTERVAL)
        self._next = 0.0
        # (task id, attempt token) -> (output length, monotonic time it last changed)
        self._seen: dict[tuple[str, str], tuple[int, float]] = {}

    def due(self, now: float) -> bool:
        if now < self._next:
            return False
        self._next = now + self.interval
        return True

    def stalled(self, tasks: Iterable[RunningTask], now: float) -> list[RunningTask]:
        """The tasks whose output has not grown for `stall_seconds` (`now`: monotonic)."""
        watched = [task for task in tasks if task.stop_reason is None]
        pipe = self.client.pipeline(transaction=False)
        for task in watched:
            pipe.strlen(keys.partial_key(task.task_id))
        seen: dict[tuple[str, str], tuple[int, float]] = {}
        found = []
        for task, length in zip(watched, pipe.execute() if watched else [], strict=True):
            key = (task.task_id, task.token)
            before = self._seen.get(key)
            # First seen (the attempt just started) or grown since: the clock starts again.
            since = before[1] if before is not None and before[0] == int(length) else now
            seen[key] = (int(length), since)
            if now - since >= self.stall_seconds:
                found.append(task)
        self._seen = seen  # tasks that ended are forgotten
        return found

    def error(self) -> TaskStalled:
        return TaskStalled(
            f"V1 sent no output for {self.stall_seconds:g} s (STALL_SECONDS); its call was "
            "closed and the partial output kept. Retry it with POST /v1/tasks/{id}/retry."
        )
