"""One error envelope for every gateway error: {"error": {"type", "message", ...}}."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.headers = headers
        self.extra = extra


def envelope(type_: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message, **extra}}


def not_found(task_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no task {task_id!r} (for this API key)")


_STATUS_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    503: "unavailable",
}


# Validation problems that are about size, not shape: answered 413 like an oversized message.
_SIZE_PROBLEMS = {"too_many_messages": "too_many_messages"}
MAX_DETAILS = 20


def safe_text(text: str, limit: int = 80) -> str:
    """`text` as an error may show it: lone surrogates escaped (they cannot be encoded as
    UTF-8, and a body that cannot be encoded is a 500), cut to `limit` characters."""
    shown = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _field(error: dict[str, Any]) -> str:
    return ".".join(safe_text(str(part), 40) for part in error.get("loc", ()) if part != "body")


def _describe(error: dict[str, Any]) -> str:
    where, problem = _field(error), safe_text(str(error.get("msg", "invalid")), 300)
    return f"{where}: {problem}" if where else problem


def validation_response(errors: list[dict[str, Any]]) -> JSONResponse:
    """422 naming each problem (413 when the problem is a size), in the usual envelope."""
    shown = errors[:MAX_DETAILS]
    details = [
        {"field": _field(err), "problem": safe_text(str(err.get("msg")), 300)} for err in shown
    ]
    message = "; ".join(_describe(err) for err in shown) or "invalid request"
    if len(errors) > len(shown):
        message += f"; and {len(errors) - len(shown)} more problems"
    sized = [_SIZE_PROBLEMS[e["type"]] for e in errors if e.get("type") in _SIZE_PROBLEMS]
    if sized:
        return JSONResponse(envelope(sized[0], message, details=details), 413)
    return JSONResponse(envelope("invalid_request", message, details=details), 422)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            envelope(exc.type, exc.message, **exc.extra), exc.status, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(err.get("type") == "json_invalid" for err in errors):
            return JSONResponse(
                envelope("malformed_json", "the request body is not valid JSON"), 400
            )
        return validation_response(errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = _STATUS_TYPES.get(exc.status_code, "error")
        return JSONResponse(
            envelope(type_, str(exc.detail)), exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # Never leak internals (or user text) in a body; the log has the traceback.
        log.exception("unhandled error: %s", type(exc).__name__)
        return JSONResponse(envelope("internal_error", "internal error; it has been logged"), 500)
