"""The error responses a route declares (`responses=errors(...)`): each status with the
error envelope's schema (`app.errors.ErrorBody`), what it means there, examples, and its
headers (`Retry-After` on 429 and 503, `WWW-Authenticate` on 401)."""

from __future__ import annotations

from typing import Any

from app.errors import ErrorBody, envelope

Responses = dict[int | str, dict[str, Any]]

RETRY_AFTER = {
    "description": "Seconds to wait before trying again.",
    "schema": {"type": "integer", "minimum": 1},
}
WWW_AUTHENTICATE = {"description": "`Bearer`", "schema": {"type": "string"}}

# status -> (what it means, {error type: example message}, headers)
_CATALOGUE: dict[int, tuple[str, dict[str, str], dict[str, Any]]] = {
    400: (
        "The body is not valid JSON.",
        {"malformed_json": "the request body is not valid JSON"},
        {},
    ),
    401: (
        "No key, or a key that is not in API_KEYS (ADMIN_API_KEYS for /v1/admin). Answered "
        "before the body is read; the connection is closed.",
        {"unauthorized": "missing or unknown API key: send `Authorization: Bearer <api key>`"},
        {"WWW-Authenticate": WWW_AUTHENTICATE},
    ),
    404: (
        "No such task for this API key.",
        {"not_found": "no task '6f0c...' (for this API key)"},
        {},
    ),
    409: (
        "The task's state does not allow it.",
        {"conflict": "the task has already ended (succeeded); nothing to cancel"},
        {},
    ),
    410: (
        "The task's event log expired with its Redis cache (RESULT_TTL); GET /v1/tasks/{id} "
        "still has its result.",
        {"gone": "this task's event log expired with its Redis cache (RESULT_TTL)"},
        {},
    ),
    413: (
        "The body is larger than MAX_REQUEST_BYTES (answered before it is read; the "
        "connection is closed).",
        {"request_too_large": "the request body has 3000000 bytes; the limit is 2097152 bytes"},
        {},
    ),
    422: (
        "A field is invalid; `details` names each problem.",
        {"invalid_request": "priority: Input should be less than or equal to 10"},
        {},
    ),
    429: (
        "Too many tasks waiting; try again after `Retry-After` seconds.",
        {"queue_full": "the short queue holds 10000 tasks (limit 10000); retry later"},
        {"Retry-After": RETRY_AFTER},
    ),
    503: (
        "The task queue (Redis) is unavailable; nothing was accepted.",
        {"unavailable": "the task queue is unavailable; nothing was accepted, try again shortly"},
        {"Retry-After": RETRY_AFTER},
    ),
    # The OpenAI-compatible calls that wait for their task answer its failure as V1 would.
    502: ("The task failed.", {"v1_unreachable": "V1 is unreachable"}, {}),
    504: ("The task ran out of time.", {"timed_out": "the task ended timed_out"}, {}),
}


IDEMPOTENCY_CONFLICT = (
    409,
    "This Idempotency-Key was used for a different request.",
    {"idempotency_conflict": "this Idempotency-Key was used for a different request"},
)


def error_response(
    status: int, description: str | None = None, examples: dict[str, str] | None = None
) -> dict[str, Any]:
    """One `responses=` entry: the envelope, a description, examples by error type."""
    meaning, default_examples, headers = _CATALOGUE[status]
    shown = examples or default_examples
    entry: dict[str, Any] = {
        "model": ErrorBody,
        "description": description or meaning,
        "content": {
            "application/json": {
                "examples": {kind: {"value": envelope(kind, text)} for kind, text in shown.items()}
            }
        },
    }
    if headers:
        entry["headers"] = headers
    return entry


def errors(*statuses: int | tuple[int, str] | tuple[int, str, dict[str, str]]) -> Responses:
    """`responses=` for the given statuses; a tuple overrides the meaning (and examples)."""
    out: Responses = {}
    for item in statuses:
        status, *rest = item if isinstance(item, tuple) else (item,)
        out[status] = error_response(status, *rest)
    return out
