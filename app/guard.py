"""A pure ASGI middleware that refuses requests before their bodies are read.

- `/v1/` HTTP requests without a known key (an API key or an operator key: the route
  still decides which kind it needs) get 401 at once; their body is never read.
- A body larger than MAX_REQUEST_BYTES gets 413: at once when Content-Length says so,
  otherwise (chunked) as soon as the bytes received pass the limit; reading stops there.

Both refusals close the connection (`Connection: close`): the unread rest of the body is
never taken in. Nothing here buffers a body (unlike `BaseHTTPMiddleware`): the app reads it
through a counting `receive`. WebSocket (`/v1/ws` authenticates its own way) and
`/healthz`, `/readyz`, `/metrics` need no key.
"""

from __future__ import annotations

import hashlib
import hmac
import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.deps import UNAUTHORIZED, bearer_key
from app.errors import envelope
from taskrecord.settings import Settings

AUTHENTICATED_PREFIX = "/v1/"
# Set on a request's scope once the guard let it through: a request the submit lane
# (`app.submit_fast`) hands on to the full app is not checked, nor its body counted, twice.
GUARDED = "openclaw.guarded"
# The SHA-256 of the request's bearer key, for the submit lane's tenant lookup.
KEY_DIGEST = "openclaw.key_digest"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


async def refuse(
    send: Send, status: int, type_: str, message: str, headers: dict[str, str] | None = None
) -> None:
    """The usual error envelope, sent straight to the server, closing the connection."""
    body = json.dumps(envelope(type_, message)).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((k.lower().encode(), v.encode()) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class RequestGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_bytes = settings.max_request_bytes
        self.known = [_digest(k) for k in (*settings.api_keys, *settings.admin_api_keys)]

    def _known_key(self, scope: Scope, authorization: str | None) -> bool:
        """Constant time per key, like `app.deps.tenant_for_key`."""
        key = bearer_key(authorization)
        if key is None:
            return False
        offered = scope[KEY_DIGEST] = _digest(key)
        found = False
        for digest in self.known:
            found |= hmac.compare_digest(offered, digest)
        return found

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get(GUARDED):
            await self.app(scope, receive, send)
            return
        scope[GUARDED] = True
        headers = Headers(scope=scope)
        path: str = scope["path"]
        if path.startswith(AUTHENTICATED_PREFIX) and not self._known_key(
            scope, headers.get("authorization")
        ):
            await refuse(send, 401, "unauthorized", UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
            return
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            message = f"the request body has {declared} bytes; {self._limit}"
            await refuse(send, 413, "request_too_large", message)
            return
        message = f"the request body is larger than allowed; {self._limit}"
        capped = _CappedBody(receive, send, self.max_bytes, message)
        await self.app(scope, capped.receive, capped.send)

    @property
    def _limit(self) -> str:
        return f"the limit is {self.max_bytes} bytes (MAX_REQUEST_BYTES)"


class _CappedBody:
    """Counts the body as the app reads it. Past the limit: answers 413 itself, tells the app
    the client has gone (`http.disconnect`) and drops whatever the app sends after that."""

    def __init__(self, receive: Receive, send: Send, limit: int, message: str) -> None:
        self._receive = receive
        self._send = send
        self.limit = limit
        self.message = message
        self.received = 0
        self.started = False
        self.refused = False

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                self.refused = True
                if not self.started:
                    self.started = True
                    await refuse(self._send, 413, "request_too_large", self.message)
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
