"""The retry policy alone: who is retried, and the delay's bounds (equal jitter)."""

from __future__ import annotations

import random

import pytest

from tasks.errors import V1BadRequest, V1ServerError, V1StreamError
from tasks.retry_policy import RetryPolicy


def test_retries_only_retryable_errors_before_output_and_within_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.should_retry(V1ServerError("503"), attempts_done=1)
    assert not policy.should_retry(V1ServerError("503"), attempts_done=3)
    assert not policy.should_retry(V1StreamError("boom", output_started=True), attempts_done=1)
    assert not policy.should_retry(V1BadRequest("bad"), attempts_done=1)


@pytest.mark.parametrize("attempts_done", [1, 2, 3, 4, 8, 20])
def test_delay_lies_between_half_and_all_of_the_capped_backoff(attempts_done: int) -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=10.0)
    ceiling = min(10.0, 2 ** (attempts_done - 1))
    rng = random.Random(attempts_done)
    delays = [policy.delay(attempts_done, rng) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert max(delays) - min(delays) > ceiling / 4  # really jittered, not a constant
