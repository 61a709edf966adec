"""The one place that decides whether a failed attempt runs again, and when.

Retry only when V1 failed before producing output (a run that started answering may have
run tools with side effects) and the failure can pass (connection errors, 5xx, 408, 429,
the same-session 500, an error chunk before any output). Delays grow exponentially, capped,
with "equal jitter" (half the capped delay fixed, half random) so that many tasks failing
together do not return together, yet none comes back at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tasks.errors import TaskRunError


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 60.0

    def should_retry(self, error: TaskRunError, attempts_done: int) -> bool:
        return error.retryable and not error.output_started and attempts_done < self.max_attempts

    def delay(self, attempts_done: int, rng: random.Random | None = None) -> float:
        """Seconds before attempt `attempts_done + 1`: uniform over [ceiling / 2, ceiling]
        (equal jitter), where ceiling is the capped exponential backoff."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** max(0, attempts_done - 1))
        return (rng or random).uniform(ceiling / 2, ceiling)
