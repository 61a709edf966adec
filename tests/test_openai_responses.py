"""The Responses API (background mode) with the official `openai` client, on the same tasks.

Every call goes through the real gateway, queue, worker and V1 simulator; the client is
the unmodified `openai` package pointed at `<gateway>/v1`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.harness import API_KEY, OTHER_API_KEY, System, submit, tag, wait_terminal, wait_until
from v1sim.process import SimulatorProcess

FINAL = {"response.completed", "response.failed", "response.cancelled", "response.incomplete"}


@pytest.fixture
def client(system: System) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=system.url + "/v1", api_key=API_KEY, max_retries=0, timeout=30
    ) as oa:
        yield oa


def events_of(stream: Any, stop_after: int | None = None) -> list[dict[str, Any]]:
    """Read a stream of response events (as plain dicts) to its end or `stop_after`."""
    events: list[dict[str, Any]] = []
    with stream:
        for event in stream:
            events.append(event.model_dump())
            if stop_after is not None and len(events) >= stop_after:
                break
    return events


def assert_strictly_increasing(events: list[dict[str, Any]]) -> None:
    numbers = [e["sequence_number"] for e in events]
    assert numbers == sorted(set(numbers)), f"not strictly increasing: {numbers}"


def test_background_create_is_queued_at_once_then_polls_to_completed(
    client: openai.OpenAI, system: System
) -> None:
    created = client.responses.create(
        model="openclaw",
        input="hello [sim:delay=1] [sim:chunks=4]",
        background=True,
        metadata={"ticket": "T-1"},
        conversation="conv-resp-1",
    )
    assert created.status == "queued" and created.background is True
    assert created.output == [] and created.metadata == {"ticket": "T-1"}
    done = wait_until(
        lambda: (r := client.responses.retrieve(created.id)).status == "completed" and r,
        30, 0.2, "the response to complete",
    )  # fmt: skip
    assert done.output_text == "tok0 tok1 tok2 tok3 "
    assert done.output[0].type == "message" and done.output[0].content[0].type == "output_text"
    # The same task over /v1/tasks: state, text, usage (V1's names) and the session.
    with system.client() as api:
        task = api.get(f"/v1/tasks/{created.id}").json()
    assert task["state"] == "succeeded" and task["result"]["content"] == done.output_text
    assert task["session_id"] == "conv-resp-1" and task["metadata"] == {"ticket": "T-1"}
    usage = task["result"]["usage"]
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.output_tokens, done.usage.total_tokens) == (
        usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"],
    )  # fmt: skip


def test_task_submitted_over_v1_tasks_reads_as_a_response(
    client: openai.OpenAI, system: System
) -> None:
    with system.client() as api:
        task = submit(api, "plain task [sim:chunks=3]", session_id="s-resp-2")
        wait_terminal(api, task["task_id"])
    response = client.responses.retrieve(task["task_id"])
    assert response.id == task["task_id"] and response.status == "completed"
    assert response.output_text == "tok0 tok1 tok2 " and response.model == "openclaw/main"


def test_user_names_the_session_when_there_is_no_conversation(
    client: openai.OpenAI, system: System
) -> None:
    created = client.responses.create(
        model="openclaw/coder", input="hi", background=True, user="user-session-3"
    )
    with system.client() as api:
        task = api.get(f"/v1/tasks/{created.id}").json()
    assert (task["session_id"], task["agent_id"]) == ("user-session-3", "coder")


def test_streamed_create_sends_the_semantic_events_in_order(client: openai.OpenAI) -> None:
    stream = client.responses.create(
        model="openclaw", input="stream me [sim:chunks=10] [sim:chunk_delay=0.02]",
        background=True, stream=True,
    )  # fmt: skip
    events = events_of(stream)
    types = [e["type"] for e in events]
    assert types[:3] == ["response.created", "response.queued", "response.in_progress"]
    assert types[3:5] == ["response.output_item.added", "response.content_part.added"]
    assert types[-4:] == [
        "response.output_text.done", "response.content_part.done",
        "response.output_item.done", "response.completed",
    ]  # fmt: skip
    assert_strictly_increasing(events)
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    expected = "".join(f"tok{i} " for i in range(10))
    assert text == expected == events[-4]["text"]
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["output"][0]["content"][0]["text"] == expected
    assert final["id"] == events[0]["response"]["id"]


def test_resume_with_starting_after_on_another_replica_misses_and_repeats_nothing(
    client: openai.OpenAI, system: System
) -> None:
    created = client.responses.create(
        model="openclaw", input="resume [sim:chunks=30] [sim:chunk_delay=0.05]", background=True
    )
    first = events_of(client.responses.retrieve(created.id, stream=True), stop_after=7)
    second = System(system.redis_base, system.db, system.v1_url, system.workdir)
    try:
        second.start_gateway()
        with openai.OpenAI(base_url=second.url + "/v1", api_key=API_KEY, max_retries=0) as other:
            last = first[-1]["sequence_number"]
            rest = events_of(other.responses.retrieve(created.id, stream=True, starting_after=last))
    finally:
        second.stop()
    assert rest[0]["sequence_number"] > last and rest[-1]["type"] == "response.completed"
    whole = events_of(client.responses.retrieve(created.id, stream=True))  # replay, ended
    assert first + rest == whole
    assert_strictly_increasing(whole)
    # Resuming after any event, in the middle of one task event's group too, gives exactly
    # the events after it (the item is known to be open without its opening being resent).
    for i, event in enumerate(whole[:-1]):
        after = event["sequence_number"]
        resumed = client.responses.retrieve(created.id, stream=True, starting_after=after)
        assert events_of(resumed) == whole[i + 1 :], f"starting_after={after}"


def test_cancel_a_running_response_closes_the_v1_call(
    client: openai.OpenAI, system: System, simulator: SimulatorProcess
) -> None:
    marker = tag()
    created = client.responses.create(
        model="openclaw", input=f"slow [sim:delay=30] [sim:tag={marker}]", background=True
    )
    wait_until(lambda: client.responses.retrieve(created.id).status == "in_progress", 20, 0.1,
               "the response to start")  # fmt: skip
    wait_until(lambda: simulator.requests(tag=marker), 10, 0.1, "V1 to get the call")
    cancelled = client.responses.cancel(created.id)
    assert cancelled.status == "cancelled"
    record = wait_until(lambda: [r for r in simulator.requests(tag=marker) if r["disconnected"]],
                        10, 0.1, "V1 saw the disconnect")[0]  # fmt: skip
    assert record["ended_at"] - record["started_at"] < 20  # aborted, not waited out
    with system.client() as api:
        assert api.get(f"/v1/tasks/{created.id}").json()["state"] == "cancelled"
    # The stream of a cancelled response ends with response.cancelled.
    events = events_of(client.responses.retrieve(created.id, stream=True))
    assert [e["type"] for e in events][-1] == "response.cancelled"
    with pytest.raises(openai.ConflictError):  # a finished response cannot be cancelled
        client.responses.cancel(client.responses.create(
            model="openclaw", input="quick", background=False).id)  # fmt: skip


def test_foreground_create_waits_for_the_answer(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="openclaw", input="wait for it [sim:chunks=2]", instructions="Be brief."
    )
    assert (response.status, response.background) == ("completed", False)
    assert response.output_text == "tok0 tok1 "


def test_keys_and_tenants_are_enforced_in_openai_errors(
    client: openai.OpenAI, system: System
) -> None:
    created = client.responses.create(model="openclaw", input="mine", background=True)
    bad = openai.OpenAI(base_url=system.url + "/v1", api_key="wrong", max_retries=0)
    with bad, pytest.raises(openai.AuthenticationError):
        bad.responses.retrieve(created.id)
    with openai.OpenAI(base_url=system.url + "/v1", api_key=OTHER_API_KEY, max_retries=0) as other:
        with pytest.raises(openai.NotFoundError) as missing:
            other.responses.retrieve(created.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.cancel(created.id)
    assert isinstance(missing.value.body, dict)
    assert {"type", "message"} <= set(missing.value.body)


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"model": "gpt-4o", "input": "x"}, "model"),
        ({"model": "openclaw", "input": "   "}, "input"),
        ({"model": "openclaw", "input": [{"role": "user", "content": ""}]}, "input.0.content"),
        ({"model": "openclaw", "input": "x", "conversation": "has space"}, "conversation"),
    ],
)
def test_bad_input_is_a_422_naming_the_field(
    client: openai.OpenAI, fields: dict[str, Any], named: str
) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as refused:
        client.responses.create(background=True, **fields)
    assert named in str(refused.value.body)


def test_failed_and_timed_out_tasks_read_as_failed_and_incomplete(
    client: openai.OpenAI, system: System
) -> None:
    with system.client() as api:
        failed = submit(api, "refused [sim:fail=400]")
        capped = submit(api, "capped [sim:chunks=100] [sim:chunk_delay=0.1]", timeout_seconds=1)
        assert wait_terminal(api, failed["task_id"])["state"] == "failed"
        partial = wait_terminal(api, capped["task_id"])["partial"]
    refused = client.responses.retrieve(failed["task_id"])
    assert refused.status == "failed" and refused.error is not None
    assert refused.error.code == "v1_bad_request" and refused.output == []
    cut = client.responses.retrieve(capped["task_id"])
    assert cut.status == "incomplete" and cut.output_text == partial.strip() + " "
    assert cut.incomplete_details is not None and cut.output[0].status == "incomplete"
    events = events_of(client.responses.retrieve(capped["task_id"], stream=True))
    assert [e["type"] for e in events][-2:] == ["response.output_item.done", "response.incomplete"]
    with system.client() as api:  # the stream's last word is what GET says, as sent
        whole = api.get(f"/v1/responses/{capped['task_id']}").json()
        replay = api.get(f"/v1/responses/{capped['task_id']}", params={"stream": "true"})
    last = [line for line in replay.text.splitlines() if line.startswith("data: ")][-1]
    assert json.loads(last[6:])["response"] == whole
    types = [
        e["type"] for e in events_of(client.responses.retrieve(failed["task_id"], stream=True))
    ]
    assert types[-1] == "response.failed" and "response.output_item.added" not in types


def test_idempotency_key_answers_the_first_response_again(client: openai.OpenAI) -> None:
    key = {"Idempotency-Key": f"resp-{tag()}"}
    first = client.responses.create(
        model="openclaw", input="once", background=True, extra_headers=key
    )
    again = client.responses.create(
        model="openclaw", input="once", background=True, extra_headers=key
    )
    assert again.id == first.id


def test_foreground_stream_disconnect_cancels_the_task(
    client: openai.OpenAI, system: System, simulator: SimulatorProcess
) -> None:
    marker = tag()
    stream = client.responses.create(
        model="openclaw", stream=True,
        input=f"long [sim:chunks=400] [sim:chunk_delay=0.05] [sim:tag={marker}]",
    )  # fmt: skip
    seen = events_of(stream, stop_after=6)  # leaving the `with` closes the connection
    assert seen[-1]["type"] == "response.output_text.delta"
    response_id = seen[0]["response"]["id"]
    ended = wait_until(lambda: (r := client.responses.retrieve(response_id)).status
                       not in ("queued", "in_progress") and r, 15, 0.1, "the end")  # fmt: skip
    assert ended.status == "cancelled"
    wait_until(lambda: [r for r in simulator.requests(tag=marker) if r["disconnected"]],
               10, 0.1, "V1 saw the disconnect")  # fmt: skip
