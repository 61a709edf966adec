"""The V1 simulator keeps the V1 contract (docs/v1-contract.md), over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from tests.test_v1sim_support import (
    AUTH,
    CHAT,
    MAIN,
    TOKEN,
    chat,
    new_tag,
    one_record,
    post_all,
    sse_data,
    wait_for,
)
from v1sim.directives import parse_directives
from v1sim.process import SimulatorProcess

# --- directives ------------------------------------------------------------------------------


def test_directives_parse_several_and_ignore_bad_values() -> None:
    d = parse_directives("hi [sim:delay=1.5] [sim:chunks=7] [sim:fail=503x2] [sim:tag=a-1]")
    assert (d.delay, d.chunks, d.fail_status, d.fail_times, d.tag) == (1.5, 7, 503, 2, "a-1")
    d = parse_directives("[sim:fail=503] [sim:chunks=-1] [sim:secret=hunter2] [sim:error_after=0]")
    assert (d.fail_status, d.fail_times, d.chunks, d.error_after) == (503, None, 5, 0)
    assert d.unknown == ("secret",) and d.invalid == ("chunks",)


# --- auth, agents, validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dXNlcjpwYXNz"}],
    ids=["missing", "wrong", "basic"],
)
def test_bad_auth_is_401_unauthorized(client: httpx.Client, headers: dict[str, str]) -> None:
    response = client.post(CHAT, json=chat("hi"), headers=headers)
    assert response.status_code == 401
    assert response.json() == {"error": {"message": "Unauthorized", "type": "unauthorized"}}
    assert response.headers["x-openclaw-simulator"] == "1"
    assert client.get("/v1/models", headers=headers).status_code == 401


def test_models_lists_agents(client: httpx.Client) -> None:
    response = client.get("/v1/models", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["object"] == "list"
    assert [m["id"] for m in response.json()["data"]] == ["openclaw/main", "openclaw/coder"]


def test_healthz_says_simulator(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.json() == {"ok": True, "simulator": True}
    assert response.headers["x-openclaw-simulator"] == "1"


def test_agent_header_wins_over_model(sim: SimulatorProcess, client: httpx.Client) -> None:
    tag = new_tag()
    headers = {**AUTH, "x-openclaw-agent-id": "coder"}
    response = client.post(CHAT, json=chat(f"x [sim:tag={tag}]", "openclaw/main"), headers=headers)
    assert response.status_code == 200
    assert response.json()["model"] == "openclaw/main"  # echoes the request, not the agent
    assert one_record(sim, tag)["agent"] == "coder"


@pytest.mark.parametrize(
    ("model", "headers", "message"),
    [
        ("openclaw", {"x-openclaw-agent-id": "ghost"}, "Unknown agent 'ghost'."),
        ("openclaw/ghost", {}, "Unknown agent 'ghost'."),
        ("openclaw", {}, "Multiple agents are configured, but this operation has no explicit"),
        ("gpt-4o", {"x-openclaw-agent-id": "main"}, "Invalid `model`"),
        ("openclaw/", {"x-openclaw-agent-id": "main"}, "Invalid `model`"),
    ],
    ids=["unknown-header", "unknown-model", "no-owner", "bad-model", "empty-agent"],
)
def test_agent_rules_give_400(
    client: httpx.Client, model: str, headers: dict[str, str], message: str
) -> None:
    response = client.post(CHAT, json=chat("hi", model), headers={**AUTH, **headers})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(message)


def test_single_agent_is_the_default_owner() -> None:
    with (
        SimulatorProcess(token=TOKEN) as solo,
        httpx.Client(base_url=solo.url, trust_env=False) as http,
    ):
        tag = new_tag()
        response = http.post(CHAT, json=chat(f"hi [sim:tag={tag}]"), headers=AUTH)
        assert response.status_code == 200
        assert one_record(solo, tag)["agent"] == "main"


@pytest.mark.parametrize(
    "messages", [[], [{"role": "system", "content": "be brief"}]], ids=["empty", "no-user"]
)
def test_missing_user_message_is_400(client: httpx.Client, messages: list[Any]) -> None:
    response = client.post(CHAT, json={"model": "openclaw", "messages": messages}, headers=MAIN)
    assert response.status_code == 400
    assert response.json() == {
        "error": {"message": "Missing user message in `messages`.", "type": "invalid_request_error"}
    }


def test_malformed_json_is_400(client: httpx.Client) -> None:
    response = client.post(CHAT, content=b'{"model": "openclaw", ', headers=MAIN)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


# --- sessions --------------------------------------------------------------------------------


def test_session_keys_user_and_fresh(sim: SimulatorProcess, client: httpx.Client) -> None:
    tag = new_tag()
    key = {"x-openclaw-session-key": f"agent:main:{tag}"}
    assert client.post(CHAT, json=chat(f"[sim:tag={tag}]"), headers={**MAIN, **key}).is_success
    body = chat(f"[sim:tag={tag}]", user="conv-42")
    assert client.post(CHAT, json=body, headers=MAIN).is_success
    for _ in range(2):
        assert client.post(CHAT, json=chat(f"[sim:tag={tag}]"), headers=MAIN).is_success
    # A call with neither gets a fresh session each time: no key worth recording (that they
    # share no history is pinned in test_v1sim_history).
    sessions = [r["session"] for r in sim.requests(tag)]
    assert sessions == [f"agent:main:{tag}", "agent:main:openai-user:conv-42", None, None]


@pytest.mark.parametrize(
    ("key", "status", "error"),
    [
        ("cron:abc", 400, "invalid_request_error"),
        ("hook:abc", 400, "invalid_request_error"),
        ("celery-task-123", 500, "api_error"),
    ],
)
def test_unscoped_session_keys_fail(
    client: httpx.Client, key: str, status: int, error: str
) -> None:
    response = client.post(CHAT, json=chat("hi"), headers={**MAIN, "x-openclaw-session-key": key})
    assert response.status_code == status
    assert response.json()["error"]["type"] == error
    if status == 500:
        assert response.json()["error"]["message"] == "internal error"


def test_same_session_at_once_gets_500(sim: SimulatorProcess) -> None:
    tag = new_tag()
    body = chat(f"hi [sim:delay=0.5] [sim:tag={tag}]", user=f"conv-{tag}")
    assert sorted(asyncio.run(post_all(sim.url, [body, body]))) == [200, 500]
    assert sorted(r["outcome"] for r in sim.requests(tag)) == ["ok", "rejected"]


def test_same_session_staggered_queues(sim: SimulatorProcess) -> None:
    tag = new_tag()
    body = chat(f"hi [sim:delay=0.8] [sim:tag={tag}]", user=f"conv-{tag}")

    async def scenario() -> list[int]:
        async with httpx.AsyncClient(base_url=sim.url, timeout=30, trust_env=False) as http:
            first = asyncio.create_task(http.post(CHAT, json=body, headers=MAIN))
            records = await asyncio.to_thread(
                wait_for, lambda: [r for r in sim.requests(tag) if r["admitted_at"]]
            )
            # The contract is about elapsed time: V1 rejects only within 0.4 s of a start.
            await asyncio.sleep(max(0.0, records[0]["admitted_at"] + 0.45 - time.time()))
            second = await http.post(CHAT, json=body, headers=MAIN)
            return [(await first).status_code, second.status_code]

    assert asyncio.run(scenario()) == [200, 200]
    first, second = sim.requests(tag)
    assert second["admitted_at"] >= first["ended_at"] - 0.01  # ran after, not alongside


# --- response formats ------------------------------------------------------------------------


def test_stream_format(sim: SimulatorProcess, client: httpx.Client) -> None:
    tag = new_tag()
    body = chat(
        f"hi [sim:chunks=4] [sim:tag={tag}]",
        "openclaw/coder",
        stream=True,
        stream_options={"include_usage": True},
    )
    response = client.post(CHAT, json=body, headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    data = sse_data(response.text)
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl_")
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["model"] == "openclaw/coder" for c in chunks)
    assert chunks[0]["choices"] == [
        {"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}
    ]
    contents = [c["choices"][0]["delta"]["content"] for c in chunks[1:5]]
    assert contents == ["tok0 ", "tok1 ", "tok2 ", "tok3 "]
    assert chunks[5]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert chunks[6]["choices"] == [] and chunks[6]["usage"]["completion_tokens"] == 4
    assert len(chunks) == 7
    record = one_record(sim, tag)
    assert (record["agent"], record["stream"], record["outcome"]) == ("coder", True, "ok")


def test_stream_without_usage_ends_with_finish(client: httpx.Client) -> None:
    body = chat("hi [sim:chunks=2]", stream=True)
    data = sse_data(client.post(CHAT, json=body, headers=MAIN).text)
    assert len(data) == 5 and data[-1] == "[DONE]"
    assert json.loads(data[-2])["choices"][0]["finish_reason"] == "stop"


def test_non_stream_format(sim: SimulatorProcess, client: httpx.Client) -> None:
    tag = new_tag()
    response = client.post(CHAT, json=chat(f"hi [sim:chunks=3] [sim:tag={tag}]"), headers=MAIN)
    assert response.status_code == 200
    answer = response.json()
    assert answer["object"] == "chat.completion" and answer["model"] == "openclaw"
    assert answer["id"] == one_record(sim, tag)["id"]
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "tok0 tok1 tok2 "},
            "finish_reason": "stop",
        }
    ]
    usage = answer["usage"]
    assert usage["completion_tokens"] == 3
    assert usage["total_tokens"] == usage["prompt_tokens"] + 3


# --- scripted failures -----------------------------------------------------------------------


def test_error_chunk_on_the_first_attempt_only(sim: SimulatorProcess, client: httpx.Client) -> None:
    tag = new_tag()
    body = chat(f"hi [sim:error_after=0x1] [sim:tag={tag}]", stream=True)
    first, second = (client.post(CHAT, json=body, headers=MAIN) for _ in range(2))
    assert first.status_code == second.status_code == 200
    assert '"error"' in sse_data(first.text)[1] and sse_data(first.text)[-1] == "[DONE]"
    assert all('"error"' not in line for line in sse_data(second.text))
    assert [r["outcome"] for r in sim.requests(tag)] == ["error_chunk", "ok"]
    assert parse_directives("[sim:error_after=3x2]").error_times == 2
    assert parse_directives("[sim:error_after=3xz]").invalid == ("error_after",)


def test_fail_twice_then_succeed(sim: SimulatorProcess, client: httpx.Client) -> None:
    tag = new_tag()
    body = chat(f"hi [sim:fail=503x2] [sim:tag={tag}]")
    statuses = [client.post(CHAT, json=body, headers=MAIN) for _ in range(3)]
    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[0].json()["error"]["type"] == "api_error"
    outcomes = [r["outcome"] for r in sim.requests(tag)]
    assert outcomes == ["error_status", "error_status", "ok"]


def test_fail_without_count_always_fails(client: httpx.Client) -> None:
    body = chat(f"hi [sim:fail=408] [sim:tag={new_tag()}]", stream=True)
    for _ in range(2):
        response = client.post(CHAT, json=body, headers=MAIN)
        assert response.status_code == 408
        assert response.json() == {
            "error": {"message": "upstream provider timeout", "type": "timeout"}
        }


def test_error_after_sends_error_chunk_in_200_stream(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    tag = new_tag()
    body = chat(f"hi [sim:chunks=5] [sim:error_after=2] [sim:tag={tag}]", stream=True)
    response = client.post(CHAT, json=body, headers=MAIN)
    assert response.status_code == 200
    data = sse_data(response.text)
    assert [json.loads(d)["choices"][0]["delta"].get("content") for d in data[1:3]] == [
        "tok0 ",
        "tok1 ",
    ]
    assert json.loads(data[3]) == {
        "error": {"message": "upstream provider error", "type": "api_error"}
    }
    assert data[4:] == ["[DONE]"]
    assert one_record(sim, tag)["outcome"] == "error_chunk"
    plain = client.post(CHAT, json=chat("hi [sim:error_after=1]"), headers=MAIN)
    assert plain.status_code == 500 and plain.json()["error"]["type"] == "api_error"
