"""The V1 client against every response shape of v1-contract.md, through an injected
httpx transport (V1 is the one external party; the end-to-end tests use the simulator)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx2 as httpx
import pytest

from tasks.errors import (
    V1BadRequest,
    V1Error,
    V1ProtocolError,
    V1ServerError,
    V1StreamError,
    V1Timeout,
    V1Unauthorized,
    V1Unreachable,
)
from tasks.v1_client import V1Client


def client_for(handler: Callable[[httpx.Request], httpx.Response]) -> V1Client:
    return V1Client("http://v1.test", "tok", transport=httpx.MockTransport(handler))


def sse(*chunks: object) -> httpx.Response:
    lines = [f"data: {json.dumps(c) if not isinstance(c, str) else c}\n\n" for c in chunks]
    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          content="".join(lines).encode())  # fmt: skip


def delta(text: str) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}


ROLE = {"choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
STOP = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}


def test_request_carries_auth_agent_model_and_session() -> None:
    seen: dict[str, object] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["auth"] = request.headers["authorization"]
        seen["agent"] = request.headers["x-openclaw-agent-id"]
        seen["body"] = json.loads(request.content)
        return sse(ROLE, delta("hi"), STOP, "[DONE]")

    result = client_for(handler).chat(agent_id="coder", messages=[{"role": "user",
                                      "content": "x"}], user="v2-abc")  # fmt: skip
    body = seen["body"]
    assert isinstance(body, dict)
    assert seen["auth"] == "Bearer tok" and seen["agent"] == "coder"
    assert body["model"] == "openclaw/coder" and body["user"] == "v2-abc"
    assert body["stream"] is True and result.content == "hi"


def test_stream_deltas_usage_and_callbacks() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    answered: list[bool] = []
    deltas: list[str] = []
    client = client_for(lambda _r: sse(ROLE, delta("a "), delta("b"), STOP,
                                       {"choices": [], "usage": usage}, "[DONE]"))  # fmt: skip
    result = client.chat(agent_id="main", messages=[], on_answered=lambda: answered.append(True),
                         on_delta=deltas.append)  # fmt: skip
    assert answered == [True] and deltas == ["a ", "b"]
    assert result.as_dict() == {"content": "a b", "usage": usage, "finish_reason": "stop"}


def test_non_streaming_json_answer_is_accepted() -> None:
    payload = {"id": "chatcmpl_1", "object": "chat.completion", "model": "openclaw",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "whole"},
                            "finish_reason": "stop"}], "usage": {"total_tokens": 1}}  # fmt: skip
    result = client_for(lambda _r: httpx.Response(200, json=payload)).chat(
        agent_id="main", messages=[]
    )
    assert result.content == "whole" and result.usage == {"total_tokens": 1}


@pytest.mark.parametrize(
    ("status", "body", "error", "retryable"),
    [
        (
            401,
            {"error": {"message": "Unauthorized", "type": "unauthorized"}},
            V1Unauthorized,
            False,
        ),
        (
            400,
            {"error": {"message": "Unknown agent 'x'.", "type": "invalid_request_error"}},
            V1BadRequest,
            False,
        ),
        (
            408,
            {"error": {"message": "upstream provider timeout", "type": "timeout"}},
            V1Timeout,
            True,
        ),
        (500, {"error": {"message": "internal error", "type": "api_error"}}, V1ServerError, True),
        (502, "not json at all", V1ServerError, True),
    ],
)
def test_error_statuses_map_to_the_hierarchy(
    status: int, body: object, error: type[V1Error], retryable: bool
) -> None:
    def handler(_r: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body)
        return httpx.Response(status, json=body)

    with pytest.raises(error) as caught:
        client_for(handler).chat(agent_id="main", messages=[])
    assert caught.value.status == status and caught.value.retryable is retryable
    assert not caught.value.output_started


def test_error_chunk_inside_a_200_stream_is_an_error_not_a_success() -> None:
    error = {"error": {"message": "upstream provider error", "type": "api_error"}}
    with pytest.raises(V1StreamError) as caught:
        client_for(lambda _r: sse(ROLE, delta("part"), error, "[DONE]")).chat(
            agent_id="main", messages=[]
        )
    assert caught.value.output_started and "upstream provider error" in caught.value.message


@pytest.mark.parametrize(
    "chunks", [(ROLE, delta("x")), (ROLE, "{not json"), ({"error": "plain"}, "[DONE]")]
)
def test_malformed_or_cut_streams_are_protocol_errors(chunks: tuple[object, ...]) -> None:
    with pytest.raises((V1ProtocolError, V1StreamError)):
        client_for(lambda _r: sse(*chunks)).chat(agent_id="main", messages=[])


def test_transport_failures_are_retryable_unreachable_or_timeout() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    def stall(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(V1Unreachable):
        client_for(refuse).chat(agent_id="main", messages=[])
    with pytest.raises(V1Timeout):
        client_for(stall).chat(agent_id="main", messages=[])
