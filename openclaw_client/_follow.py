"""The bookkeeping of one `follow`, without I/O (the sync and async clients drive it).

A follow reads `GET /v1/tasks/{id}/events` and, whenever the stream ends before the terminal
event (a dropped connection, a gateway restarting, a proxy timing out, the gateway telling a
slow reader to resume), connects again with `Last-Event-ID` set to the last seq it yielded.
The gateway then sends exactly what came after it; events at or below that seq (a replay
racing a live event) are dropped here, so each event is yielded once, in order.
"""

from __future__ import annotations

import random
import time

from httpx_sse import ServerSentEvent
from pydantic import ValidationError as ModelError

from openclaw_client.config import ClientConfig
from openclaw_client.errors import (
    APIError,
    ServerUnavailable,
    WaitTimeout,
    is_retryable_status,
)
from openclaw_client.models import Event


class FollowState:
    def __init__(
        self, config: ClientConfig, task_id: str, after_seq: int, timeout: float | None
    ) -> None:
        self.config = config
        self.policy = config.follow
        self.task_id = task_id
        self.last_seq = max(after_seq, 0)
        self.deadline = time.monotonic() + timeout if timeout is not None else None
        self.timeout = timeout
        self.reconnects = 0
        self._delay = self.policy.initial_delay
        self._down_since: float | None = None  # when the last working connection ended
        self._hint: float | None = None  # the server's `retry:` or `Retry-After`

    def remaining(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def check_deadline(self) -> None:
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise WaitTimeout(
                f"task {self.task_id} did not end within {self.timeout:g} s "
                f"(last event seq {self.last_seq})"
            )

    def headers(self) -> dict[str, str]:
        headers = self.config.headers()
        headers.update({"Accept": "text/event-stream", "Cache-Control": "no-store"})
        if self.last_seq:
            headers["Last-Event-ID"] = str(self.last_seq)
        return headers

    def connected(self) -> None:
        self._down_since = None

    def refused(self, error: APIError) -> APIError:
        """A non-200 answer: waited out if transient (returned as the cause), else raised."""
        if error.status is None or not is_retryable_status(error.status):
            raise error
        if error.retry_after is not None:
            self._hint = min(error.retry_after, self.policy.max_delay)
        return error

    def admit(self, sse: ServerSentEvent) -> Event | None:
        """The event to yield, or None (a control message, or one already yielded)."""
        if sse.retry is not None:
            self._hint = min(sse.retry / 1000, self.policy.max_delay)
        if not sse.id or not sse.data:
            return None  # e.g. `overflow`: the stream ends next and we resume
        try:
            event = Event.model_validate_json(sse.data)
        except ModelError as exc:
            raise APIError(f"unreadable event: {exc}", type="bad_event") from exc
        if event.task_id != self.task_id or event.seq <= self.last_seq:
            return None
        self.last_seq = event.seq
        self._delay = self.policy.initial_delay  # the stream works: start backoff afresh
        return event

    def dropped(self, cause: BaseException | None) -> float:
        """The stream ended before the terminal event: seconds to wait before connecting
        again. Raises `WaitTimeout` past the deadline, `ServerUnavailable` when no
        connection has worked for `give_up_after` seconds."""
        self.check_deadline()
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
        down = now - self._down_since
        if down > self.policy.give_up_after:
            raise ServerUnavailable(
                f"lost the event stream of task {self.task_id} for {down:.0f} s "
                f"(last event seq {self.last_seq}): {cause or 'closed early'}",
                type="unreachable",
            ) from cause
        if self._hint is not None:
            delay, self._hint = self._hint, None
        else:
            # Equal jitter: followers of one restarted gateway do not return in lockstep.
            delay = self._delay / 2 + random.uniform(0, self._delay / 2)
            self._delay = min(self._delay * 2, self.policy.max_delay)
        self.reconnects += 1
        remaining = self.remaining()
        return delay if remaining is None else max(min(delay, remaining), 0.0)
