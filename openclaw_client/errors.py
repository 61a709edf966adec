"""One rooted error hierarchy, mapped from the gateway's envelope `{"error": {"type", ...}}`.

Catch `OpenClawError` for everything; `APIError` and its subclasses carry what the gateway
said (`status`, `type`, `message`, `details`). `ServerUnavailable` also covers a gateway that
could not be reached at all (`status` is None then): both are worth trying again later.
"""

from __future__ import annotations

from typing import Any

import httpx


class OpenClawError(Exception):
    """Base of every error this package raises."""


class ConfigurationError(OpenClawError):
    """The client cannot be built as asked (no API key, a malformed URL)."""


class APIError(OpenClawError):
    """The gateway answered with an error (or, for `ServerUnavailable`, not at all)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str = "error",
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        # Every other field of the envelope (`state` of a 409, `details` of a 422, ...).
        self.details = details or {}
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f"{self.status} " if self.status is not None else ""
        return f"{where}{self.type}: {self.message}"


class ValidationError(APIError):
    """The request is wrong (400 malformed, 413 too large, 422 invalid): do not resend it."""


class AuthenticationError(APIError):
    """401 / 403: the API key is missing, unknown or not allowed here."""


class NotFoundError(APIError):
    """404: no such task for this API key."""


class ConflictError(APIError):
    """409: the task is in a state that refuses the operation (`state` says which), or an
    `Idempotency-Key` was reused with another body."""

    @property
    def state(self) -> str | None:
        value = self.details.get("state")
        return str(value) if value is not None else None


class RateLimitError(APIError):
    """429: a queue is full; `retry_after` says how many seconds to wait."""


class ServerError(APIError):
    """5xx: the gateway failed."""


class ServerUnavailable(ServerError):
    """502 / 503 / 504, or the gateway could not be reached (`status` None)."""


class WaitTimeout(OpenClawError, TimeoutError):
    """`wait` or `follow` reached its deadline before the task ended."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: ValidationError,
    422: ValidationError,
    429: RateLimitError,
    502: ServerUnavailable,
    503: ServerUnavailable,
    504: ServerUnavailable,
}


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None  # absent, or an HTTP date (the gateway sends seconds)


def error_from_response(response: httpx.Response) -> APIError:
    """The exception for an error answer (its body must have been read)."""
    status = response.status_code
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    try:
        body = response.json()
        error = dict(body["error"])
        type_, message = str(error.pop("type")), str(error.pop("message"))
    except (ValueError, KeyError, TypeError):
        # Not our envelope (a proxy in between, a crash page): keep the text short.
        type_, message, error = "http_error", f"HTTP {status}: {response.text[:200]}", {}
    return kind(
        message, status=status, type=type_, details=error, retry_after=_retry_after(response)
    )


def unreachable(exc: httpx.TransportError) -> ServerUnavailable:
    return ServerUnavailable(
        f"the gateway could not be reached ({type(exc).__name__}: {exc})", type="unreachable"
    )


def is_retryable_status(status: int) -> bool:
    """Answers worth waiting out while following: overload, restarts, proxies in between."""
    return status in (429, 502, 503, 504)
