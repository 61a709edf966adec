"""A task running in this worker process, as the watchers in `tasks.watchers` see it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunningTask:
    """A task running here. `stop()` interrupts it only inside `interruptible()` (the V1
    call): an interruption landing while the task records its outcome would lose it."""

    task_id: str
    token: str
    greenlet: Any
    deadline: float  # unix time the current tier's limit runs out
    promote_to: float | None  # a later deadline granted once (short -> long tier), or None
    stop_reason: BaseException | None = field(default=None)
    _interruptible: bool = field(default=False)

    def stop(self, error: BaseException) -> None:
        if self.stop_reason is not None:
            return  # the first reason wins; one interruption per task
        self.stop_reason = error
        if self._interruptible:
            self._interruptible = False
            self.greenlet.kill(error, block=False)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        if self.stop_reason is not None:
            raise self.stop_reason
        self._interruptible = True
        try:
            yield
        finally:
            # No switch to the hub can happen between the call's end and this line.
            self._interruptible = False


# task id -> the task; shared by the supervisor (which adds and removes) and the watchers.
RunningTasks = dict[str, RunningTask]
