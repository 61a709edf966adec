"""HTTP client for V1's OpenAI-compatible endpoint, streaming.

One `V1Client` per worker process (building an httpx client costs ~30 ms of CPU). Every
response shape of `v1-contract.md` is handled, including an error chunk inside a 200
stream. Tests may inject an httpx transport.

The client is httpx2, pydantic's maintained fork of httpx (same API; the `openai` package
depends on it already): its connection pool assigns a request in one pass over the pooled
connections, where httpx 0.28's (httpcore 1.0.9) re-counted every connection for each idle
one, ~92 us against ~10 us per assignment at 50 pooled connections, twice per V1 call
(issue 13: ~6 % of a short task's worker CPU).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import gevent
import httpx2 as httpx

from tasks.errors import (
    V1Error,
    V1ProtocolError,
    V1StreamError,
    V1Timeout,
    V1Unreachable,
    error_for_status,
)
from tasks.idle_check import use_native_poll
from tasks.v1_transport import CoalescingTransport

MAX_ERROR_BODY = 4096
# After [DONE]: how long and how many lines the rest of a stream may take to be read.
DRAIN_SECONDS, DRAIN_LINES = 1.0, 16
# Where an event stream's lines end (the SSE spec): CR, LF or CRLF, nothing else.
_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass
class V1Result:
    content: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    parts: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"content": self.content, "usage": self.usage, "finish_reason": self.finish_reason}


class V1Client:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
        max_connections: int = 1000,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._token = token
        # Absolute and parsed once: httpx parses a relative URL and merges it per request.
        self._chat_url = httpx.URL(base_url.rstrip("/") + "/v1/chat/completions")
        use_native_poll()
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=100)
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(
                connect=connect_timeout, read=read_timeout, write=30.0, pool=None
            ),
            limits=limits,
            transport=transport or CoalescingTransport(limits),
        )

    def close(self) -> None:
        self._http.close()

    def chat(
        self,
        *,
        agent_id: str,
        messages: Sequence[dict[str, Any]],
        user: str | None = None,
        on_answered: Callable[[], None] = lambda: None,
        on_delta: Callable[[str], None] = lambda _delta: None,
    ) -> V1Result:
        """Run one agent turn; calls `on_answered` on HTTP 200 and `on_delta` per text delta."""
        body: dict[str, Any] = {
            "model": f"openclaw/{agent_id}",
            "messages": list(messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if user:
            # `user` gives V1 a stable, agent-scoped session (agent:<id>:openai-user:<user>);
            # see tasks.conversation for how it is named.
            body["user"] = user
        headers = {"Authorization": f"Bearer {self._token}", "x-openclaw-agent-id": agent_id}
        result = V1Result()
        try:
            with self._http.stream("POST", self._chat_url, json=body, headers=headers) as response:
                if response.status_code != 200:
                    raise error_for_status(response.status_code, _error_message(response))
                on_answered()
                if response.headers.get("content-type", "").startswith("application/json"):
                    _read_json(response, result, on_delta)
                else:
                    lines = sse_lines(response.iter_bytes())
                    _read_stream(lines, result, on_delta)
                    _drain(lines)
        except V1Error:
            raise
        except httpx.TimeoutException as exc:
            raise V1Timeout(
                f"V1 did not answer in time ({type(exc).__name__})",
                output_started=bool(result.parts),
            ) from exc
        except httpx.TransportError as exc:
            raise V1Unreachable(
                f"V1 connection failed ({type(exc).__name__})", output_started=bool(result.parts)
            ) from exc
        result.content = "".join(result.parts)
        return result


def _error_message(response: httpx.Response) -> str:
    raw = b""
    for chunk in response.iter_bytes():
        raw += chunk
        if len(raw) >= MAX_ERROR_BODY:
            break
    try:
        error = json.loads(raw)["error"]
        return f"{error.get('type', 'error')}: {error.get('message', '')}"[:500]
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"HTTP {response.status_code} from V1"


def _read_json(response: httpx.Response, result: V1Result, on_delta: Callable[[str], None]) -> None:
    try:
        payload = json.loads(response.read())
        if "error" in payload:
            raise V1StreamError(str(payload["error"].get("message", "error")))
        choice = payload["choices"][0]
        content = choice["message"].get("content") or ""
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise V1ProtocolError("V1 answered JSON that is not a chat completion") from exc
    if content:
        result.parts.append(content)
        on_delta(content)
    result.finish_reason = choice.get("finish_reason")
    result.usage = payload.get("usage")


def sse_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """The lines of an event stream. Not httpx's `iter_lines`: like str.splitlines it also
    breaks at U+2028, U+2029, U+0085 and a few controls, which V1's JSON may carry raw (a
    JavaScript JSON.stringify does not escape them), and the chunk would no longer parse."""
    pending = b""
    for chunk in chunks:
        *lines, pending = _LINE_END.split(pending + chunk)
        for line in lines:
            yield line.decode("utf-8", errors="replace")
    if pending:
        yield pending.decode("utf-8", errors="replace")


def _drain(rest: Iterator[str]) -> None:
    """Read what follows [DONE] (the body's end, normally already received). A response
    left half-read closes its connection, so every call paid a new connection to V1 and V1
    a new accept. Bounded: a V1 that holds the stream open after [DONE] costs at most
    DRAIN_SECONDS (under gevent, as in workers), then the connection is dropped."""
    with contextlib.suppress(Exception), gevent.Timeout(DRAIN_SECONDS, False):
        for _ in itertools.islice(rest, DRAIN_LINES):
            pass


def _read_stream(lines: Iterator[str], result: V1Result, on_delta: Callable[[str], None]) -> None:
    for line in lines:
        if not line.startswith("data:"):
            continue  # blank separators, comments, `event:` lines
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise V1ProtocolError(
                "V1 sent a stream chunk that is not JSON", output_started=bool(result.parts)
            ) from exc
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk:
            error = chunk["error"] if isinstance(chunk["error"], dict) else {}
            message = f"{error.get('type', 'error')}: {error.get('message', '')}"[:500]
            raise V1StreamError(message, output_started=bool(result.parts))
        if chunk.get("usage"):
            result.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content:
                result.parts.append(content)
                on_delta(content)
            if choice.get("finish_reason"):
                result.finish_reason = choice["finish_reason"]
    raise V1ProtocolError("V1's stream ended without [DONE]", output_started=bool(result.parts))
