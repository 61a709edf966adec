"""`POST /v1/chat/completions`: V1's checks before a run, its gates, and disconnect handling.

Auth, agent and model rules, the session key, then the one-run-per-session lane and the
capacity gate; an admitted call becomes a `v1sim.run.Run`. A client that disconnects at any
moment aborts the call, which frees its session and capacity slot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid

from starlette.types import Receive, Scope, Send

from v1sim.directives import parse_directives
from v1sim.run import Run
from v1sim.state import SessionBusy, SimConfig, SimState
from v1sim.transcripts import last_user_text
from v1sim.wire import Exchange, authorized, error_body, read_body, wait_disconnect

log = logging.getLogger(__name__)

RESERVED_SESSION_PREFIXES = ("cron:", "hook:", "system:")


class Rejected(Exception):
    """A call V1 refuses before any run starts (validation, auth, busy session)."""

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.message = message


def session_key(agent: str, header: str | None, user: object) -> tuple[str, bool]:
    """The call's session key, and whether it is stable (named by a key header or `user`)."""
    key = (header or "").strip()
    if key:
        parts = key.split(":", 2)
        if len(parts) == 3 and parts[0] == "agent" and parts[1] and parts[2]:
            return key, True
        if key.startswith(RESERVED_SESSION_PREFIXES):
            raise Rejected(400, "Session key uses a reserved namespace.")
        # Real V1 fails deep inside the run with an unscoped key: a bare 500.
        raise Rejected(500)
    if isinstance(user, str) and user:
        return f"agent:{agent}:openai-user:{user}", True
    return f"agent:{agent}:openai:{uuid.uuid4()}", False


class ChatCompletions:
    """Raw ASGI endpoint: owning `receive` lets it notice a disconnect at any moment."""

    def __init__(self, config: SimConfig, state: SimState) -> None:
        self.config = config
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        if body is None:
            return
        record = self.state.open_record()
        exchange = Exchange(send, record)
        serve = asyncio.create_task(self._serve(scope, body, exchange))
        watch = asyncio.create_task(wait_disconnect(receive))
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

    async def _serve(self, scope: Scope, body: bytes, exchange: Exchange) -> None:
        try:
            await self._handle(scope, body, exchange)
        except Rejected as rejected:
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
            raise Rejected(400, 'Invalid `model`: expected "openclaw" or "openclaw/<agentId>".')
        agent = (header or "").strip() or from_model or None
        if agent is None:
            agent = self.config.default_agent
            if agent is None and len(self.config.agents) == 1:
                agent = self.config.agents[0]
        if agent is None:
            raise Rejected(
                400,
                "Multiple agents are configured, but this operation has no explicit owner. "
                "Set the x-openclaw-agent-id header or use model openclaw/<agentId>.",
            )
        if agent not in self.config.agents:
            raise Rejected(400, f"Unknown agent '{agent}'.")
        return agent

    async def _handle(self, scope: Scope, body: bytes, exchange: Exchange) -> None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not authorized(self.config, headers.get("authorization")):
            raise Rejected(401)
        try:
            payload = json.loads(body)
        except ValueError:
            raise Rejected(400, "Malformed JSON body.") from None
        if not isinstance(payload, dict):
            raise Rejected(400, "Request body must be a JSON object.")
        record = exchange.record
        model = payload.get("model", "openclaw")
        agent = self._agent(model, headers.get("x-openclaw-agent-id"))
        record["agent"] = agent
        text = last_user_text(payload.get("messages"))
        if text is None:
            raise Rejected(400, "Missing user message in `messages`.")
        digest = self.state.digest(text)
        directives = parse_directives(text)
        stream = payload.get("stream") is True
        record["message_sha256"] = digest
        record["stream"] = stream
        record["tag"] = directives.tag
        record["unknown_directives"] = list(directives.unknown)
        record["invalid_directives"] = list(directives.invalid)
        session, stable = session_key(
            agent, headers.get("x-openclaw-session-key"), payload.get("user")
        )
        # Only a stable session keeps a transcript, and only its key is worth recording.
        history = session if stable else None
        record["session"] = history
        try:
            await self.state.sessions.acquire(session)
        except SessionBusy:
            raise Rejected(500) from None
        try:
            await self.state.capacity.acquire()
            try:
                self.state.run_started(record)
                run = Run(self.config, self.state, exchange, directives, payload, digest, history)
                await run.execute(stream, model)
            finally:
                self.state.run_ended()
                self.state.capacity.release()
        finally:
            self.state.sessions.release(session)
