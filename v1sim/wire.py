"""HTTP plumbing shared by the simulator's endpoints: error shapes, auth, raw ASGI exchange."""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from v1sim.state import RequestRecord, SimConfig

SIM_HEADER = (b"x-openclaw-simulator", b"1")

_ERROR_BODIES: dict[int, tuple[str, str]] = {
    400: ("Bad request", "invalid_request_error"),
    401: ("Unauthorized", "unauthorized"),
    403: ("Forbidden", "forbidden"),
    404: ("Not found", "not_found"),
    405: ("Method not allowed", "invalid_request_error"),
    408: ("upstream provider timeout", "timeout"),
    429: ("rate limit exceeded", "rate_limit"),
    500: ("internal error", "api_error"),
}


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    """The contract's error shape; unknown statuses map onto V1's generic api_error."""
    default_message, kind = _ERROR_BODIES.get(status, ("upstream provider error", "api_error"))
    if 400 <= status < 500 and status not in _ERROR_BODIES:
        kind = "invalid_request_error"
    return {"error": {"message": message or default_message, "type": kind}}


def dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def authorized(config: SimConfig, header: str | None) -> bool:
    """Bearer token check; Basic and anything else are refused like V1 does."""
    scheme, _, token = (header or "").partition(" ")
    expected = config.token.encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected)


class Exchange:
    """The response side of one call: remembers what was sent, for the record."""

    def __init__(self, send: Send, record: RequestRecord) -> None:
        self._send = send
        self.record = record
        self.started = False
        # Set right before the last message: a disconnect seen after it is the normal end.
        self.finishing = False

    async def start(self, status: int, content_type: bytes) -> None:
        self.started = True
        self.record["status"] = status
        headers = [(b"content-type", content_type), (b"cache-control", b"no-cache")]
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def json(self, status: int, body: object) -> None:
        payload = dumps(body)
        self.started = True
        self.record["status"] = status
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        self.finishing = True
        await self._send({"type": "http.response.body", "body": payload})

    async def event(self, data: object | str) -> None:
        line = data if isinstance(data, str) else dumps(data).decode()
        await self._send(
            {"type": "http.response.body", "body": f"data: {line}\n\n".encode(), "more_body": True}
        )

    async def end_stream(self) -> None:
        self.finishing = True
        await self._send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client left before sending it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class SimulatorHeader:
    """Marks every response so nobody mistakes the simulator for a real V1."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def marked(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), SIM_HEADER]
            await send(message)

        await self.app(scope, receive, marked)
