"""One error envelope for every gateway error: {"error": {"type", "message", ...}}."""

from __future__ import annotations

import logging
from typing import Any

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

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


class ErrorDetail(BaseModel):
    field: str = Field(description="Where: dotted path in the body, or the parameter's name.")
    problem: str


class ErrorInfo(BaseModel):
    # Some errors carry more fields (`state` of a 409, `max_priority`...): allowed.
    model_config = ConfigDict(extra="allow")

    type: str = Field(description="Machine-readable kind, e.g. `not_found`, `queue_full`.")
    message: str = Field(description="What went wrong, for people; never echoes user text.")
    details: list[ErrorDetail] | None = Field(
        None, description="422/413 validation errors: one entry per problem (at most 20)."
    )


class ErrorBody(BaseModel):
    """The one error envelope of the gateway (its shape in the OpenAPI document)."""

    error: ErrorInfo


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


_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """`Allow` of a 405: every method some route takes on this path. Starlette names only
    the first route whose path matched (`POST` for `GET`+`POST /v1/tasks`)."""
    path = request.scope["path"]
    root = request.scope.get("root_path", "")

    def taken(method: str) -> bool:
        probe = {"type": "http", "path": path, "root_path": root, "method": method, "headers": []}
        return any(route.matches(probe)[0] == Match.FULL for route in request.app.router.routes)

    return ", ".join(method for method in _METHODS if taken(method))


REDIS_UNAVAILABLE = "the task store (Redis) is not reachable; retry shortly"


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
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = _STATUS_TYPES.get(exc.status_code, "error")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return JSONResponse(envelope(type_, str(exc.detail)), exc.status_code, headers=headers)

    @app.exception_handler(redis.exceptions.RedisError)
    async def _redis_down(_request: Request, exc: redis.exceptions.RedisError) -> JSONResponse:
        # Redis is the live store: without it nothing can be read or changed right now.
        log.warning("redis unavailable: %s", type(exc).__name__)
        return JSONResponse(envelope("unavailable", REDIS_UNAVAILABLE), 503,
                            headers={"Retry-After": "5"})  # fmt: skip

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # Never leak internals (or user text) in a body; the log has the traceback.
        log.exception("unhandled error: %s", type(exc).__name__)
        return JSONResponse(envelope("internal_error", "internal error; it has been logged"), 500)
