"""`POST /v1/tasks` without FastAPI's per-request machinery: a pure ASGI layer.

The route in `app.api.tasks` stays (it is what the OpenAPI document describes, and the
fallback). Profiled under load, most of a submit's gateway CPU was not the submit: routing,
dependency solving (two sync dependencies, each a hop to a worker thread), the `Request`
object, and the layers around them. This layer answers the common case itself: a known
tenant key, a JSON body that `TaskCreate` accepts. It validates as FastAPI does (the parsed
object, then the model in Python mode; orjson parses, and whatever it refuses that
`json.loads` might take goes to the route), runs the same `submit`, and sends the bytes the
route would send (`tests/test_submit_lane.py` compares the two).

Anything else (no or unknown key, another content type, a body the model refuses, a body
that is not a JSON object, a client gone mid-body) is handed to the FastAPI app with the
body read so far replayed: its answer is, by construction, the one it always gave.
Errors of the submit itself (`ApiError`, Redis down, anything unexpected) go through the
app's own exception handlers, so their status, headers and envelope are unchanged too.
OpenTelemetry middleware FastAPI would add is not on this lane (none is configured).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
import redis.exceptions
from fastapi import FastAPI
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.tasks_read import load_task
from app.context import GatewayContext
from app.deps import bearer_key
from app.errors import ApiError
from app.guard import KEY_DIGEST, RequestGuard
from app.schemas import TaskCreate, TaskOut
from app.submit import submit
from taskrecord.settings import Settings

PATH = "/v1/tasks"
_JSON = b"application/json"


def install_submit_lane(app: FastAPI, settings: Settings) -> None:
    """Call last in `create_app` (no middleware can be added after): `POST /v1/tasks` goes
    through the guard and this lane only; every other request through the app's full stack
    (the same guard, the error middleware, the routes), as before."""
    stack = app.build_middleware_stack()
    app.middleware_stack = SubmitLane(stack, RequestGuard(SubmitFastPath(stack), settings))


class SubmitLane:
    def __init__(self, stack: ASGIApp, lane: ASGIApp) -> None:
        self.stack = stack
        self.lane = lane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == PATH
            and not scope.get("root_path")
        ):
            await self.lane(scope, receive, send)
        else:
            await self.stack(scope, receive, send)


class SubmitFastPath:
    """Behind `RequestGuard` (which already refused unknown keys and big bodies); `app` is
    the full stack, whose guard lets the request through as already checked."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._tenants: list[tuple[bytes, str]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx: GatewayContext = scope["app"].state.ctx
        authorization = content_type = idempotency_key = None
        for name, value in scope["headers"]:  # the first of each, as Starlette's `Headers.get`
            if name == b"authorization":
                authorization = authorization or value.decode("latin-1")
            elif name == b"content-type":
                content_type = content_type or value
            elif name == b"idempotency-key":
                idempotency_key = idempotency_key or value.decode("latin-1")
        tenant = self._tenant(ctx, scope.get(KEY_DIGEST), authorization)
        if tenant is None or not _is_json(content_type):
            await self.app(scope, receive, send)
            return
        messages, body, whole = await _read_body(receive)
        data = _parse(body) if whole else None
        if data is None:
            await self.app(scope, _replay(messages, receive), send)
            return
        try:
            task = TaskCreate.model_validate(data)
        except ValidationError:
            await self.app(scope, _replay(messages, receive), send)  # the route's 422/413
            return
        try:
            task_id, accepted = await submit(ctx, tenant, task, idempotency_key)
            out = (
                await load_task(ctx, tenant, task_id)  # an idempotent replay: as it is now
                if accepted is None
                else TaskOut.from_live(accepted, None)
            )
            payload = out.model_dump_json().encode()
        except Exception as exc:
            await _handled(scope, messages, receive, send, exc)
            return
        # What `Response(payload, 202, {"Location": ...}, media_type=...)` sends, byte for byte.
        await send({"type": "http.response.start", "status": 202, "headers": [
            (b"location", f"{PATH}/{task_id}".encode("latin-1")),
            (b"content-length", str(len(payload)).encode("latin-1")),
            (b"content-type", _JSON),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": payload})

    def _tenant(
        self, ctx: GatewayContext, digest: bytes | None, authorization: str | None
    ) -> str | None:
        """`app.deps.get_tenant`'s answer (constant time per key), digests computed once."""
        if self._tenants is None:
            self._tenants = [
                (hashlib.sha256(key.encode()).digest(), tenant)
                for key, tenant in ctx.settings.api_keys.items()
            ]
        if digest is None:
            key = bearer_key(authorization)
            if key is None:
                return None
            digest = hashlib.sha256(key.encode()).digest()
        found = None
        for known, tenant in self._tenants:
            if hmac.compare_digest(digest, known):
                found = tenant
        return found


def _is_json(content_type: bytes | None) -> bool:
    """Only the plain spellings; anything rarer takes the route's own parsing."""
    if content_type is None:
        return False
    lowered = content_type.lower()
    return lowered == _JSON or lowered.startswith(b"application/json;")


async def _read_body(receive: Receive) -> tuple[list[Message], bytes, bool]:
    """(messages received, the body, whether it arrived whole)."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, b"", False
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return messages, b"".join(chunks), True


def _parse(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None to let the route answer (also for what orjson is
    stricter about than `json.loads`, e.g. NaN or integers beyond 64 bits)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


async def _handled(
    scope: Scope, messages: list[Message], receive: Receive, send: Send, exc: Exception
) -> None:
    """The answer the app's exception handlers give for `exc`, as for the route: an
    `ApiError` or Redis error its own; anything else the 500 envelope, then raised on (as
    Starlette's error middleware does) for the server to log."""
    handlers = scope["app"].exception_handlers
    kind: type[Exception] = Exception
    if isinstance(exc, ApiError):
        kind = ApiError
    elif isinstance(exc, redis.exceptions.RedisError):
        kind = redis.exceptions.RedisError
    response = await handlers[kind](Request(scope, _replay(messages, receive)), exc)
    await response(scope, receive, send)
    if kind is Exception:
        raise exc
