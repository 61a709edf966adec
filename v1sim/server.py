"""The V1 simulator's ASGI app: V1's OpenAI-compatible surface plus inspection endpoints.

It reproduces the contract in docs/v1-contract.md (auth, agent and session rules, SSE shape,
errors inside 200 streams, one run per session, a capacity limit, disconnect aborts the run)
so that tests and benchmarks can drive V2 without a real OpenClaw gateway.

Session history, like V1's per-session transcript: a call with `user` or an
`x-openclaw-session-key` has a stable session that keeps a transcript; a call with neither
gets a fresh session each time and nothing is kept. A run that starts (past the checks, the
session lane, the capacity gate, V1's overhead and any `[sim:fail=...]` status) first adds to
the transcript: every message of the request (role and text) when the transcript is empty, so
a client may seed history; otherwise only the request's last user message. The model sees the
whole transcript after that; if it ended with a user message that never got a reply (an empty
reply counts as none), the model also sees `[queued user message from a previous active turn]
<that text>` just before the new message. The run then adds the assistant reply: the full
answer, or "" when it ends with an error (an error chunk, or the non-streaming 500) or the
client disconnects. Calls refused before the run add nothing. Each request record carries
`session` (None for a one-off session) and `model_input` ("<role>: <text>" lines of what the
model saw). Bounded (v1sim.transcripts): 2,000 sessions (least recently used evicted first),
500 entries each (oldest dropped), each text cut to 4,096 characters, 16 M characters in all
transcripts, and 16,384 characters of `model_input` per record (the newest lines).

Loopback-only control endpoints: `GET /_sim/requests[?tag=]`, `GET /_sim/stats`,
`GET /_sim/sessions/{URL-encoded session key}`, `POST /_sim/reset` (also forgets transcripts).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from v1sim.chat import RESERVED_SESSION_PREFIXES, ChatCompletions
from v1sim.run import content_delta, full_content
from v1sim.state import SimConfig, SimState
from v1sim.wire import SIM_HEADER, SimulatorHeader, authorized, error_body

# Re-exported: these lived here before the split into chat, run, transcripts and wire.
__all__ = [
    "RESERVED_SESSION_PREFIXES",
    "SIM_HEADER",
    "ChatCompletions",
    "SimulatorHeader",
    "authorized",
    "content_delta",
    "create_app",
    "error_body",
    "full_content",
]

log = logging.getLogger(__name__)

# Starlette's TestClient reports this host for in-process calls.
_TEST_CLIENT_HOST = "testclient"


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


def _forbidden() -> Response:
    return JSONResponse(error_body(403), status_code=403)


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
            return _forbidden()
        return JSONResponse({"requests": state.records(request.query_params.get("tag"))})

    async def sim_stats(request: Request) -> Response:
        if not _loopback(request):
            return _forbidden()
        return JSONResponse(state.stats())

    async def sim_session(request: Request) -> Response:
        if not _loopback(request):
            return _forbidden()
        session = request.path_params["session"]
        transcript = state.transcripts.get(session)
        if transcript is None:
            return JSONResponse(error_body(404, "Unknown session."), status_code=404)
        return JSONResponse({"session": session, "transcript": transcript})

    async def sim_reset(request: Request) -> Response:
        if not _loopback(request):
            return _forbidden()
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
        # `path`: a session key may hold a slash, which arrives decoded from %2F.
        Route("/_sim/sessions/{session:path}", sim_session, methods=["GET"]),
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
