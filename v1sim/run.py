"""One admitted run: V1's overhead, the scripted delay, then an answer, a failure or an error chunk.

The run adds its messages to the session's transcript once it is past the overhead and not
scripted to fail, and always ends its turn: the full answer, or "" when it failed or was
aborted by a disconnect.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

from v1sim.directives import Directives
from v1sim.state import SimConfig, SimState
from v1sim.transcripts import Turn, model_input
from v1sim.wire import Exchange, error_body


def content_delta(index: int) -> str:
    """Delta `index` of every answer: predictable, so tests can check the text."""
    return f"tok{index} "


def full_content(chunks: int) -> str:
    return "".join(content_delta(i) for i in range(chunks))


def _prompt_tokens(messages: list[Any]) -> int:
    # A cheap, deterministic stand-in for a tokenizer: whitespace-separated words.
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += len(content.split())
    return total


class Run:
    """One admitted run of one call; `execute` answers it."""

    def __init__(
        self,
        config: SimConfig,
        state: SimState,
        exchange: Exchange,
        directives: Directives,
        payload: dict[str, Any],
        digest: str,
        session: str | None,
    ) -> None:
        self.config = config
        self.state = state
        self.exchange = exchange
        self.d = directives
        self.payload = payload
        self.digest = digest
        # The transcript's key; None for a one-off session, whose history is thrown away.
        self.session = session
        self.id = exchange.record["id"]
        self.created = int(time.time())
        self.reply = ""  # set to the full answer once the run succeeds

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
            return
        if not self.state.errors_this_attempt(self.digest, self.d):
            self.d = dataclasses.replace(self.d, error_after=None)
        turn = self._begin()
        try:
            if stream:
                await self._stream(model)
            else:
                await self._complete(model)
        finally:
            # Also on cancellation (the client left): V1 keeps an empty reply for the turn.
            turn.finish(self.reply)

    def _begin(self) -> Turn:
        turn = self.state.transcripts.begin(self.session, self.payload.get("messages"))
        self.exchange.record["model_input"] = model_input(turn.seen)
        return turn

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
        self.reply = full_content(d.chunks)
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
        self.reply = full_content(d.chunks)
        await self.exchange.json(200, body)
