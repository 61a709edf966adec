"""The V1 simulator's ASGI app: V1's OpenAI-compatible surface plus inspection endpoints.

It reproduces the contract in docs/v1-contract.md (auth, agent and session rules, SSE shape,
errors inside 200 streams, one run per session, a capacity limit, disconnect aborts the run)
so that tests and benchmarks can drive V2 without a real OpenClaw gateway.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from v1sim.directives import Directives, parse_directives
from v1sim.state import RequestRecord, SessionBusy, SimConfig, SimState

log = logging.getLogger(__name__)

SIM_HEADER = (b"x-openclaw-simulator", b"1")
RESERVED_SESSION_PREFIXES = ("cron:", "hook:", "system:")
# Starlette's TestClient reports this host for in-process calls.
_TEST_CLIENT_HOST = "testclient"

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


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class _Rejected(Exception):
    """A call V1 refuses before any run starts (validation, auth, busy session)."""

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.message = message


class _Exchange:
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
        payload = _dumps(body)
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
        line = data if isinstance(data, str) else _dumps(data).decode()
        await self._send(
            {"type": "http.response.body", "body": f"data: {line}\n\n".encode(), "more_body": True}
        )

    async def end_stream(self) -> None:
        self.finishing = True
        await self._send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client left before sending it."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def authorized(config: SimConfig, header: str | None) -> bool:
    """Bearer token check; Basic and anything else are refused like V1 does."""
    scheme, _, token = (header or "").partition(" ")
    expected = config.token.encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected)


def _last_user_text(messages: object) -> str | None:
    """Text of the last user message (string or OpenAI content parts), None if there is none."""
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            parts = [p.get("text") for p in content if isinstance(p, dict)]
            return "\n".join(p for p in parts if isinstance(p, str))
        return ""
    return None


def _prompt_tokens(messages: list[Any]) -> int:
    # A cheap, deterministic stand-in for a tokenizer: whitespace-separated words.
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content.split())
    return total


class ChatCompletions:
    """Raw ASGI endpoint: owning `receive` lets it notice a disconnect at any moment."""

    def __init__(self, config: SimConfig, state: SimState) -> None:
        self.config = config
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        if body is None:
            return
        record = self.state.open_record()
        exchange = _Exchange(send, record)
        serve = asyncio.create_task(self._serve(scope, body, exchange))
        watch = asyncio.create_task(_wait_disconnect(receive))
        try:
            await asyncio.wait({serve, watch}, return_when=asyncio.FIRST_COMPLETED)
            if not serve.done() and not exchange.finishing:
                # The client is gone: abort the run, which frees its session and capacity slot.
                serve.cancel()
                record["disconnected"] = True
                record["outcome"] = "disconnected"
            await asyncio.wait({serve})
        finally:
            watch.cancel()
            serve.cancel()
            self.state.close_record(record)

    async def _serve(self, scope: Scope, body: bytes, exchange: _Exchange) -> None:
        try:
            await self._handle(scope, body, exchange)
        except _Rejected as rejected:
            exchange.record["outcome"] = "rejected"
            await exchange.json(rejected.status, error_body(rejected.status, rejected.message))
        except Exception:
            log.exception("simulator failure")
            exchange.record["outcome"] = "error_status"
            if exchange.started:
                await exchange.end_stream()
            else:
                await exchange.json(500, error_body(500))

    def _agent(self, model: object, header: str | None) -> str:
        prefix, slash, from_model = model.partition("/") if isinstance(model, str) else ("", "", "")
        if prefix != "openclaw" or (slash and not from_model):
            raise _Rejected(400, 'Invalid `model`: expected "openclaw" or "openclaw/<agentId>".')
        agent = (header or "").strip() or from_model or None
        if agent is None:
            agent = self.config.default_agent
            if agent is None and len(self.config.agents) == 1:
                agent = self.config.agents[0]
        if agent is None:
            raise _Rejected(
                400,
                "Multiple agents are configured, but this operation has no explicit owner. "
                "Set the x-openclaw-agent-id header or use model openclaw/<agentId>.",
            )
        if agent not in self.config.agents:
            raise _Rejected(400, f"Unknown agent '{agent}'.")
        return agent

    @staticmethod
    def _session(agent: str, header: str | None, user: object) -> str:
        key = (header or "").strip()
        if key:
            parts = key.split(":", 2)
            if len(parts) == 3 and parts[0] == "agent" and parts[1] and parts[2]:
                return key
            if key.startswith(RESERVED_SESSION_PREFIXES):
                raise _Rejected(400, "Session key uses a reserved namespace.")
            # Real V1 fails deep inside the run with an unscoped key: a bare 500.
            raise _Rejected(500)
        if isinstance(user, str) and user:
            return f"agent:{agent}:openai-user:{user}"
        return f"agent:{agent}:openai:{uuid.uuid4()}"

    async def _handle(self, scope: Scope, body: bytes, exchange: _Exchange) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not authorized(self.config, headers.get("authorization")):
            raise _Rejected(401)
        try:
            payload = json.loads(body)
        except ValueError:
            raise _Rejected(400, "Malformed JSON body.") from None
        if not isinstance(payload, dict):
            raise _Rejected(400, "Request body must be a JSON object.")
        record = exchange.record
        model = payload.get("model", "openclaw")
        agent = self._agent(model, headers.get("x-openclaw-agent-id"))
        record["agent"] = agent
        text = _last_user_text(payload.get("messages"))
        if text is None:
            raise _Rejected(400, "Missing user message in `messages`.")
        digest = self.state.digest(text)
        directives = parse_directives(text)
        stream = payload.get("stream") is True
        record["message_sha256"] = digest
        record["stream"] = stream
        record["tag"] = directives.tag
        record["unknown_directives"] = list(directives.unknown)
        record["invalid_directives"] = list(directives.invalid)
        session = self._session(agent, headers.get("x-openclaw-session-key"), payload.get("user"))
        record["session"] = session
        try:
            await self.state.sessions.acquire(session)
        except SessionBusy:
            raise _Rejected(500) from None
        try:
            await self.state.capacity.acquire()
            try:
                self.state.run_started(record)
                run = _Run(self.config, self.state, exchange, directives, payload, digest)
                await run.execute(stream, model)
            finally:
                self.state.run_ended()
                self.state.capacity.release()
        finally:
            self.state.sessions.release(session)


class _Run:
    """One admitted run: overhead, delay, then an answer, a failure or an error chunk."""

    def __init__(
        self,
        config: SimConfig,
        state: SimState,
        exchange: _Exchange,
        directives: Directives,
        payload: dict[str, Any],
        digest: str,
    ) -> None:
        self.config = config
        self.state = state
        self.exchange = exchange
        self.d = directives
        self.payload = payload
        self.digest = digest
        self.id = exchange.record["id"]
        self.created = int(time.time())

    def _usage(self) -> dict[str, int]:
        messages = self.payload.get("messages")
        prompt = _prompt_tokens(messages if isinstance(messages, list) else [])
        completion = self.d.chunks
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _chunk(self, model: object, delta: dict[str, str], finish: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    async def execute(self, stream: bool, model: object) -> None:
        if self.config.overhead_seconds:
            await asyncio.sleep(self.config.overhead_seconds)
        fail_status = self.state.failing_status(self.digest, self.d)
        if fail_status is not None:
            # Decided before the role chunk: a failing status cannot follow a 200 header.
            await asyncio.sleep(self.d.delay)
            self.exchange.record["outcome"] = "error_status"
            await self.exchange.json(fail_status, error_body(fail_status))
        elif stream:
            await self._stream(model)
        else:
            await self._complete(model)

    async def _stream(self, model: object) -> None:
        ex, d = self.exchange, self.d
        await ex.start(200, b"text/event-stream")
        await ex.event(self._chunk(model, {"role": "assistant"}, None))
        await asyncio.sleep(d.delay)
        for i in range(d.chunks + 1):
            if d.error_after == i or (i == d.chunks and d.error_after is not None):
                ex.record["outcome"] = "error_chunk"
                await ex.event(error_body(502))
                await ex.end_stream()
                return
            if i == d.chunks:
                break
            if i:
                await asyncio.sleep(d.chunk_delay)
            await ex.event(self._chunk(model, {"content": content_delta(i)}, None))
        await ex.event(self._chunk(model, {}, "stop"))
        options = self.payload.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            usage = {**self._chunk(model, {}, None), "choices": [], "usage": self._usage()}
            await ex.event(usage)
        ex.record["outcome"] = "ok"
        await ex.end_stream()

    async def _complete(self, model: object) -> None:
        d = self.d
        produced = d.chunks if d.error_after is None else min(d.error_after, d.chunks)
        await asyncio.sleep(d.delay + d.chunk_delay * max(produced - 1, 0))
        if d.error_after is not None:
            self.exchange.record["outcome"] = "error_status"
            await self.exchange.json(500, error_body(500, "upstream provider error"))
            return
        body = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": full_content(d.chunks)},
                    "finish_reason": "stop",
                }
            ],
            "usage": self._usage(),
        }
        self.exchange.record["outcome"] = "ok"
        await self.exchange.json(200, body)


def content_delta(index: int) -> str:
    """Delta `index` of every answer: predictable, so tests can check the text."""
    return f"tok{index} "


def full_content(chunks: int) -> str:
    return "".join(content_delta(i) for i in range(chunks))


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


def _loopback(request: Request) -> bool:
    """Control endpoints answer local callers only: they reset state and expose records."""
    if request.client is None or request.client.host == _TEST_CLIENT_HOST:
        return True
    try:
        address = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def create_app(config: SimConfig) -> Starlette:
    """Build a simulator app with its own, empty state."""
    state = SimState(config)

    async def models(request: Request) -> Response:
        if not authorized(config, request.headers.get("authorization")):
            return JSONResponse(error_body(401), status_code=401)
        data = [
            {"id": f"openclaw/{a}", "object": "model", "created": 0, "owned_by": "openclaw"}
            for a in config.agents
        ]
        return JSONResponse({"object": "list", "data": data})

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "simulator": True})

    async def sim_requests(request: Request) -> Response:
        if not _loopback(request):
            return JSONResponse(error_body(403), status_code=403)
        return JSONResponse({"requests": state.records(request.query_params.get("tag"))})

    async def sim_stats(request: Request) -> Response:
        if not _loopback(request):
            return JSONResponse(error_body(403), status_code=403)
        return JSONResponse(state.stats())

    async def sim_reset(request: Request) -> Response:
        if not _loopback(request):
            return JSONResponse(error_body(403), status_code=403)
        state.reset()
        return JSONResponse({"ok": True})

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return JSONResponse(error_body(status), status_code=status)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.warning(
            "*** OpenClaw V1 SIMULATOR (not a real V1 gateway): port %s, agents %s, "
            "capacity %s, overhead %ss ***",
            config.port,
            ",".join(config.agents),
            config.capacity,
            config.overhead_seconds,
        )
        yield

    routes = [
        Route("/v1/chat/completions", ChatCompletions(config, state), methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/_sim/requests", sim_requests, methods=["GET"]),
        Route("/_sim/stats", sim_stats, methods=["GET"]),
        Route("/_sim/reset", sim_reset, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: http_error, 405: http_error},
    )
    app.add_middleware(SimulatorHeader)
    app.state.sim = state
    return app
