"""What can go wrong when a worker runs a task: one rooted hierarchy.

`V1Error` subclasses classify V1's answers; `retryable` says whether a fresh attempt may
succeed (the retry policy in `tasks.retry_policy` also checks whether output had started).
"""

from __future__ import annotations

from typing import ClassVar


class TaskRunError(Exception):
    """Base of everything a task run raises on purpose."""

    kind: ClassVar[str] = "error"
    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, output_started: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.output_started = output_started

    def as_dict(self) -> dict[str, object]:
        return {"type": self.kind, "message": self.message}


class V1Error(TaskRunError):
    """V1 did not complete the run."""

    kind = "v1_error"

    def __init__(
        self, message: str, *, status: int | None = None, output_started: bool = False
    ) -> None:
        super().__init__(message, output_started=output_started)
        self.status = status

    def as_dict(self) -> dict[str, object]:
        data = super().as_dict()
        if self.status is not None:
            data["status"] = self.status
        return data


class V1Unreachable(V1Error):
    """Connection refused, reset or dropped: V1 may be restarting."""

    kind = "v1_unreachable"
    retryable = True


class V1Unauthorized(V1Error):
    """401: the V1 token is wrong. Retrying cannot help; an operator must fix V1_TOKEN."""

    kind = "v1_unauthorized"


class V1BadRequest(V1Error):
    """400-class answer saying the request itself is wrong (unknown agent, bad model...)."""

    kind = "v1_bad_request"


class V1Timeout(V1Error):
    """408 or a read timeout: V1's model backend did not answer in time."""

    kind = "v1_timeout"
    retryable = True


class V1RateLimited(V1Error):
    kind = "v1_rate_limited"
    retryable = True


class V1ServerError(V1Error):
    """5xx, including the same-session 500 V1 answers when two runs start at once."""

    kind = "v1_server_error"
    retryable = True


class V1StreamError(V1Error):
    """An error chunk inside a 200 stream (V1 reports model failures this way)."""

    kind = "v1_stream_error"
    retryable = True


class V1ProtocolError(V1Error):
    """An answer that does not follow the contract (bad JSON, stream cut without [DONE])."""

    kind = "v1_protocol_error"
    retryable = True


class TaskCancelled(TaskRunError):
    kind = "cancelled"


class TaskTimeLimit(TaskRunError):
    kind = "time_limit"


class LeaseLost(TaskRunError):
    """Another attempt owns the task now (this worker was presumed dead)."""

    kind = "lease_lost"


def error_for_status(status: int, message: str) -> V1Error:
    """Map a non-200 HTTP answer of V1 onto the hierarchy."""
    if status == 401 or status == 403:
        return V1Unauthorized(message, status=status)
    if status == 408:
        return V1Timeout(message, status=status)
    if status == 429:
        return V1RateLimited(message, status=status)
    if status >= 500:
        return V1ServerError(message, status=status)
    return V1BadRequest(message, status=status)
