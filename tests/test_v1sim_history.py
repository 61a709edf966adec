"""The V1 simulator keeps V1's per-session transcript, over real HTTP: what each run's model saw
(`model_input` in the request records) and what each session stored (`/_sim/sessions/...`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

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
    wait_disconnected,
    wait_for,
)
from v1sim.process import SimulatorProcess
from v1sim.server import create_app
from v1sim.state import SimConfig
from v1sim.transcripts import MAX_TEXT_CHARS, QUEUED_MARKER, Transcripts, model_input

REPLY = "tok0 tok1 "  # the answer to every message below: they ask for two chunks
QUICK = "[sim:chunks=2]"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    """Default capacity here (the shared `sim` fixture has 3); `client` follows it."""
    with SimulatorProcess(token=TOKEN, agents=["main", "coder"]) as proc:
        yield proc


def ask(client: httpx.Client, text: str, **extra: Any) -> httpx.Response:
    return client.post(CHAT, json=chat(f"{text} {QUICK}", **extra), headers=MAIN)


def seen(sim: SimulatorProcess, tag: str) -> list[str]:
    model_input: list[str] = one_record(sim, tag)["model_input"]
    return model_input


def entry(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


# --- what each run adds and sees -------------------------------------------------------------


@pytest.mark.parametrize("by", ["user", "session-key"])
def test_history_accumulates_per_session(
    sim: SimulatorProcess, client: httpx.Client, by: str
) -> None:
    tags = [new_tag() for _ in range(3)]
    name = f"s-{tags[0]}"
    extra: dict[str, Any] = {"user": name} if by == "user" else {}
    headers = {} if by == "user" else {"x-openclaw-session-key": f"agent:main:{name}"}
    session = f"agent:main:openai-user:{name}" if by == "user" else f"agent:main:{name}"
    texts = [f"step {i} {QUICK} [sim:tag={t}]" for i, t in enumerate(tags)]
    for text in texts:
        response = client.post(CHAT, json=chat(text, **extra), headers={**MAIN, **headers})
        assert response.status_code == 200
    assert seen(sim, tags[0]) == [f"user: {texts[0]}"]
    assert seen(sim, tags[2]) == [
        f"user: {texts[0]}",
        f"assistant: {REPLY}",
        f"user: {texts[1]}",
        f"assistant: {REPLY}",
        f"user: {texts[2]}",
    ]
    assert all(one_record(sim, t)["session"] == session for t in tags)
    expected = [m for text in texts for m in (entry("user", text), entry("assistant", REPLY))]
    assert sim.transcript(session) == expected


def test_an_existing_session_takes_only_the_last_user_message(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    user, tag = f"u-{new_tag()}", new_tag()
    assert ask(client, "first", user=user).status_code == 200
    # The client re-sends its own copy of the history: V1 keeps its own and ignores it.
    messages = [
        entry("system", "ignored system"),
        entry("user", "ignored old question"),
        entry("assistant", "ignored old answer"),
        entry("user", f"second [sim:tag={tag}]"),
    ]
    response = client.post(CHAT, json={"messages": messages, "user": user}, headers=MAIN)
    assert response.status_code == 200
    assert [line for line in seen(sim, tag) if "ignored" in line] == []
    assert seen(sim, tag)[-1] == f"user: second [sim:tag={tag}]"
    transcript = sim.transcript(f"agent:main:openai-user:{user}")
    assert transcript is not None and len(transcript) == 4


def test_users_never_see_each_others_text(sim: SimulatorProcess) -> None:
    """Interleaved and concurrent calls of two users: neither's text reaches the other's model."""
    tag = new_tag()
    secrets = {"alice": f"alice-secret-{new_tag()}", "bob": f"bob-secret-{new_tag()}"}
    bodies = [
        chat(f"{secrets[u]} {i} [sim:delay=0.2] {QUICK} [sim:tag={tag}-{u}]", user=f"{u}-{tag}")
        for i in range(3)
        for u in ("alice", "bob")
    ]
    # One call per user at a time (same-session calls at once would get V1's 500).
    for i in range(0, len(bodies), 2):
        assert asyncio.run(post_all(sim.url, bodies[i : i + 2])) == [200, 200]
    for user, other in (("alice", "bob"), ("bob", "alice")):
        records = sim.requests(f"{tag}-{user}")
        assert len(records) == 3
        assert [len(r["model_input"]) for r in records] == [1, 3, 5]
        for record in records:
            assert record["session"] == f"agent:main:openai-user:{user}-{tag}"
            assert all(secrets[other] not in line for line in record["model_input"])
            assert all(secrets[user] in line for line in record["model_input"][::2])


def test_fresh_session_seeded_with_history_records_all_of_it(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    user, tag = f"u-{new_tag()}", new_tag()
    parts = [{"type": "text", "text": "part one"}, {"type": "image_url", "image_url": {}}]
    messages = [
        entry("system", "be brief"),
        {"role": "user", "content": parts},
        entry("assistant", "an earlier answer"),
        entry("user", f"now this {QUICK} [sim:tag={tag}]"),
    ]
    response = client.post(CHAT, json={"messages": messages, "user": user}, headers=MAIN)
    assert response.status_code == 200
    stored = [
        entry("system", "be brief"),
        entry("user", "part one"),
        entry("assistant", "an earlier answer"),
        entry("user", f"now this {QUICK} [sim:tag={tag}]"),
    ]
    assert seen(sim, tag) == [f"{e['role']}: {e['content']}" for e in stored]
    transcript = sim.transcript(f"agent:main:openai-user:{user}")
    assert transcript == [*stored, entry("assistant", REPLY)]


def test_one_off_sessions_keep_no_history(sim: SimulatorProcess, client: httpx.Client) -> None:
    tags = [new_tag() for _ in range(2)]
    for t in tags:
        messages = [entry("user", f"earlier {t}"), entry("user", f"now {QUICK} [sim:tag={t}]")]
        response = client.post(CHAT, json={"messages": messages}, headers=MAIN)
        assert response.status_code == 200
    for t in tags:
        assert seen(sim, t) == [f"user: earlier {t}", f"user: now {QUICK} [sim:tag={t}]"]
        assert one_record(sim, t)["session"] is None


# --- failed, refused and aborted runs --------------------------------------------------------


@pytest.mark.parametrize("stream", [True, False], ids=["error-chunk", "non-stream-500"])
def test_failed_run_leaves_empty_reply_and_next_call_sees_queued_wrapper(
    sim: SimulatorProcess, client: httpx.Client, stream: bool
) -> None:
    user, tags = f"u-{new_tag()}", [new_tag(), new_tag()]
    first = f"first [sim:error_after=0] [sim:tag={tags[0]}]"
    response = client.post(CHAT, json=chat(first, user=user, stream=stream), headers=MAIN)
    if stream:
        assert response.status_code == 200
        data = sse_data(response.text)
        assert json.loads(data[1])["error"]["type"] == "api_error" and data[2] == "[DONE]"
    else:
        assert response.status_code == 500
    session = f"agent:main:openai-user:{user}"
    assert sim.transcript(session) == [entry("user", first), entry("assistant", "")]

    second = f"second {QUICK} [sim:tag={tags[1]}]"
    assert client.post(CHAT, json=chat(second, user=user), headers=MAIN).status_code == 200
    assert seen(sim, tags[1]) == [
        f"user: {first}",
        "assistant: ",
        f"user: {QUEUED_MARKER} {first}",
        f"user: {second}",
    ]
    # The wrapper is what the model saw; the transcript stays a plain list.
    assert sim.transcript(session) == [
        entry("user", first),
        entry("assistant", ""),
        entry("user", second),
        entry("assistant", REPLY),
    ]


def test_refused_calls_record_nothing(sim: SimulatorProcess, client: httpx.Client) -> None:
    user, tag = f"u-{new_tag()}", new_tag()
    session = f"agent:main:openai-user:{user}"
    assert ask(client, "hello", user=user).status_code == 200
    before = sim.transcript(session)
    retried = chat(f"retried [sim:fail=503x1] {QUICK} [sim:tag={tag}]", user=user)
    assert client.post(CHAT, json=retried, headers=MAIN).status_code == 503
    assert one_record(sim, tag)["model_input"] == []
    assert client.post(CHAT, json=chat("bad token", user=user), headers={}).status_code == 401
    assert client.post(CHAT, json={"messages": [], "user": user}, headers=MAIN).status_code == 400
    assert sim.transcript(session) == before
    # The retry that succeeds is the first time the model sees the message: no wrapper.
    assert client.post(CHAT, json=retried, headers=MAIN).status_code == 200
    assert sim.requests(tag)[-1]["model_input"] == [
        "user: hello " + QUICK,
        f"assistant: {REPLY}",
        f"user: {retried['messages'][0]['content']}",
    ]
    assert sim.transcript(f"agent:main:openai-user:never-{user}") is None


def test_same_session_500_records_nothing(sim: SimulatorProcess) -> None:
    user, tag = f"u-{new_tag()}", new_tag()
    body = chat(f"twice [sim:delay=0.5] {QUICK} [sim:tag={tag}]", user=user)
    assert sorted(asyncio.run(post_all(sim.url, [body, body]))) == [200, 500]
    refused = [r for r in sim.requests(tag) if r["status"] == 500]
    assert refused[0]["model_input"] == [] and refused[0]["session"] is not None
    transcript = sim.transcript(f"agent:main:openai-user:{user}")
    assert transcript == [entry("user", body["messages"][0]["content"]), entry("assistant", REPLY)]


def test_disconnect_mid_stream_leaves_empty_reply(sim: SimulatorProcess) -> None:
    user, tag = f"u-{new_tag()}", new_tag()
    text = f"long [sim:chunks=50] [sim:chunk_delay=0.5] [sim:tag={tag}]"
    with (
        httpx.Client(base_url=sim.url, timeout=10, trust_env=False) as http,
        http.stream("POST", CHAT, json=chat(text, user=user, stream=True), headers=MAIN) as resp,
    ):
        lines = resp.iter_lines()
        assert '"role":"assistant"' in next(lines)
        assert next(lines) == ""
        assert '"content":"tok0 "' in next(lines)  # text had started to flow
    wait_disconnected(sim, tag)
    session = f"agent:main:openai-user:{user}"
    wait_for(lambda: sim.transcript(session) == [entry("user", text), entry("assistant", "")])


# --- the sessions endpoint and the bounds ----------------------------------------------------


def test_sessions_endpoint_takes_url_encoded_keys(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    user = f"odd/user?#%:{new_tag()} é"
    assert ask(client, "hi", user=user).status_code == 200
    session = f"agent:main:openai-user:{user}"
    response = client.get(f"/_sim/sessions/{quote(session, safe='')}")
    assert response.status_code == 200
    assert response.json() == {
        "session": session,
        "transcript": [entry("user", f"hi {QUICK}"), entry("assistant", REPLY)],
    }
    assert sim.transcript(session) == response.json()["transcript"]
    unknown = client.get("/_sim/sessions/agent%3Amain%3Anobody")
    assert unknown.status_code == 404
    assert unknown.json() == {"error": {"message": "Unknown session.", "type": "not_found"}}


def test_reset_forgets_transcripts(sim: SimulatorProcess, client: httpx.Client) -> None:
    user = f"u-{new_tag()}"
    assert ask(client, "remember me", user=user).status_code == 200
    assert sim.transcript(f"agent:main:openai-user:{user}") is not None
    sim.reset()
    assert sim.transcript(f"agent:main:openai-user:{user}") is None
    tag = new_tag()
    assert ask(client, f"again [sim:tag={tag}]", user=user).status_code == 200
    assert seen(sim, tag) == [f"user: again [sim:tag={tag}] {QUICK}"]


def test_long_texts_are_cut_in_records_and_transcripts(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    user, tag = f"u-{new_tag()}", new_tag()
    text = f"[sim:tag={tag}] {QUICK} " + "x" * (3 * MAX_TEXT_CHARS)
    assert client.post(CHAT, json=chat(text, user=user), headers=MAIN).status_code == 200
    (line,) = seen(sim, tag)
    assert len(line) == MAX_TEXT_CHARS and line.startswith(f"user: [sim:tag={tag}]")
    transcript = sim.transcript(f"agent:main:openai-user:{user}")
    assert transcript is not None and len(transcript[0]["content"]) == MAX_TEXT_CHARS


def test_transcripts_stay_bounded() -> None:
    store = Transcripts(max_sessions=2, max_entries=3, max_total_chars=1_000)
    for name in ("a", "b", "a", "c"):  # "b" is the least recently used when "c" arrives
        store.begin(name, [entry("user", name)]).finish("ok")
    assert (store.get("b"), len(store)) == (None, 2)
    # Three entries at most: the oldest ("user: a" of the first call) went first.
    assert store.get("a") == [
        entry("assistant", "ok"),
        entry("user", "a"),
        entry("assistant", "ok"),
    ]
    store.begin("c", [entry("user", "y" * 1_000)]).finish("")
    assert store.get("a") is None and store.get("c") is not None  # over the character budget
    lines = model_input([entry("user", f"{i:02d}" * 1_000) for i in range(30)])
    assert len(lines) == 8 and lines[-1].startswith("user: 29")  # the newest, within 16 KB


@pytest.mark.parametrize(
    "path", ["/_sim/sessions/agent%3Amain%3Ax", "/_sim/requests", "/_sim/stats"]
)
def test_control_endpoints_refuse_remote_callers(path: str) -> None:
    app = create_app(SimConfig(token=TOKEN))
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
            return await http.get(path, headers=AUTH)

    response = asyncio.run(get())
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "forbidden"
