"""Chat Completions through V2's queue, with the official `openai` client, unmodified.

The answers have V1's shapes (v1-contract.md); the run is an ordinary task: visible over
/v1/tasks, in the session order, cancelled when its client disconnects.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.harness import API_KEY, System, tag, wait_until
from v1sim.process import SimulatorProcess

TASK_HEADER = "x-openclaw-task-id"


@pytest.fixture
def client(system: System) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=system.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30
    ) as oa:
        yield oa


def task_of(system: System, task_id: str) -> dict[str, Any]:
    with system.client() as api:
        body: dict[str, Any] = api.get(f"/v1/tasks/{task_id}").json()
    return body


def test_non_streaming_answer_is_a_chat_completion_of_a_task(
    client: openai.OpenAI, system: System
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="openclaw", user="chat-s-1",
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "hello [sim:chunks=3]"}],
    )  # fmt: skip
    completion = raw.parse()
    task_id = raw.headers[TASK_HEADER]
    assert completion.id == f"chatcmpl_{task_id}" and completion.model == "openclaw"
    assert completion.choices[0].message.content == "tok0 tok1 tok2 "
    assert completion.choices[0].finish_reason == "stop"
    task = task_of(system, task_id)
    assert task["state"] == "succeeded" and task["session_id"] == "chat-s-1"
    assert completion.usage is not None
    assert completion.usage.model_dump(exclude_none=True) == task["result"]["usage"]
    assert "openclaw" in [model.id for model in client.models.list()]


def test_stream_has_role_chunk_deltas_finish_and_usage(
    client: openai.OpenAI, system: System
) -> None:
    stream = client.chat.completions.create(
        model="openclaw/coder", messages=[{"role": "user", "content": "go [sim:chunks=8]"}],
        stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    with stream:
        chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "".join(f"tok{i} " for i in range(8))
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    task = task_of(system, chunks[0].id.removeprefix("chatcmpl_"))
    assert task["agent_id"] == "coder" and task["result"]["content"] == text
    assert chunks[-1].usage.total_tokens == task["result"]["usage"]["total_tokens"]


def test_failure_after_the_stream_began_is_an_error_chunk_in_the_200(
    client: openai.OpenAI,
) -> None:
    stream = client.chat.completions.create(
        model="openclaw", stream=True,
        messages=[{"role": "user", "content": "cut [sim:chunks=6] [sim:error_after=3]"}],
    )  # fmt: skip
    seen: list[str] = []
    with stream, pytest.raises(openai.APIError) as failed:
        for chunk in stream:
            seen += [chunk.choices[0].delta.content or ""] if chunk.choices else []
    assert stream.response.status_code == 200
    assert "tok0 tok1 tok2 " in "".join(seen)  # output came first, then the error chunk
    assert "v1_stream_error" in str(failed.value.body)


def test_failure_before_an_answer_is_the_status_in_openai_error_shape(
    client: openai.OpenAI, system: System
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:  # V1 refused the request: 400
        client.chat.completions.create(
            model="openclaw", messages=[{"role": "user", "content": "bad [sim:fail=400]"}]
        )
    response = refused.value.response
    assert response.headers["x-should-retry"] == "false"  # it ran; a retry would run it again
    assert set(response.json()["error"]) >= {"message", "type"}
    assert task_of(system, response.headers[TASK_HEADER])["state"] == "failed"
    with pytest.raises(openai.UnprocessableEntityError) as invalid:  # refused at the door
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert "model" in invalid.value.message
    with pytest.raises(openai.APIStatusError) as too_many:  # counted before validating each
        client.chat.completions.create(model="openclaw", messages=[{"role": "user"}] * 5000)
    assert too_many.value.status_code == 413 and "MAX_MESSAGES" in too_many.value.message
    bad = openai.OpenAI(base_url=system.url + "/v1", api_key="wrong", max_retries=0)
    with bad, pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="openclaw", messages=[{"role": "user", "content": "x"}])


def test_stream_disconnect_cancels_the_task_and_v1_sees_it(
    client: openai.OpenAI, system: System, simulator: SimulatorProcess
) -> None:
    marker = tag()
    stream = client.chat.completions.create(
        model="openclaw", stream=True, messages=[{"role": "user", "content":
            f"long [sim:chunks=400] [sim:chunk_delay=0.05] [sim:tag={marker}]"}],
    )  # fmt: skip
    text = ""
    for chunk in stream:
        text += (chunk.choices[0].delta.content or "") if chunk.choices else ""
        if text.count("tok") >= 3:
            break
    stream.close()
    task_id = chunk.id.removeprefix("chatcmpl_")
    ended = wait_until(lambda: (t := task_of(system, task_id))["state"] != "running" and t, 15,
                       0.1, "the task to end")  # fmt: skip
    assert ended["state"] == "cancelled" and ended["partial"].startswith("tok0 tok1 tok2 ")
    record = wait_until(lambda: [r for r in simulator.requests(tag=marker) if r["disconnected"]],
                        10, 0.1, "V1 saw the disconnect")[0]  # fmt: skip
    assert record["ended_at"] - record["started_at"] < 15  # 400 x 0.05 s would be 20 s


def test_non_streaming_disconnect_cancels_the_task(
    system: System, simulator: SimulatorProcess
) -> None:
    marker, session = tag(), f"chat-gone-{tag()}"
    impatient = openai.OpenAI(
        base_url=system.url + "/v1", api_key=API_KEY, max_retries=0,
        timeout=httpx.Timeout(30, read=2),
    )  # fmt: skip
    with impatient, pytest.raises(openai.APITimeoutError):  # the client gives up and closes
        impatient.chat.completions.create(
            model="openclaw", user=session,
            messages=[{"role": "user", "content": f"slow [sim:delay=30] [sim:tag={marker}]"}],
        )  # fmt: skip
    wait_until(lambda: [r for r in simulator.requests(tag=marker) if r["disconnected"]],
               10, 0.1, "V1 saw the disconnect")  # fmt: skip
    with system.client() as api:
        tasks = wait_until(lambda: api.get("/v1/tasks", params={"session_id": session}).json()
                           ["tasks"], 30, 0.2, "the task in the store")  # fmt: skip
        assert [t["state"] for t in tasks] == ["cancelled"]


def test_one_user_runs_one_chat_at_a_time(
    client: openai.OpenAI, simulator: SimulatorProcess
) -> None:
    """Two calls of one conversation at once: V1 would answer the second with a 500; through
    the queue the second waits for the first."""
    marker, session = tag(), f"chat-order-{tag()}"
    answers: list[str] = []

    def ask(n: int) -> None:
        reply = client.chat.completions.create(
            model="openclaw", user=session,
            messages=[{"role": "user", "content": f"#{n} [sim:delay=1] [sim:tag={marker}]"}],
        )  # fmt: skip
        answers.append(reply.choices[0].message.content or "")

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(answers) == 2
    first, second = sorted(simulator.requests(tag=marker), key=lambda r: r["started_at"])
    assert first["status"] == second["status"] == 200
    assert second["started_at"] >= first["ended_at"]
