"""`if_busy` on submit: what a new task does to a conversation that already has live tasks
(enqueue, reject, interrupt, replace_queued), shown by what V1 saw (the simulator's request
log) and by each task's record and events."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import redis

from tests.harness import System, submit, tag, wait_for_state, wait_terminal, wait_until
from v1sim.process import SimulatorProcess

STREAM = "[sim:chunks=200] [sim:chunk_delay=0.05]"  # about 10 s of output


def events(client: redis.Redis, task_id: str) -> list[dict[str, Any]]:
    return [json.loads(f[b"e"]) for _id, f in client.xrange(f"v2:events:{task_id}")]


def cancel_reason(client: redis.Redis, task_id: str) -> str:
    (ended,) = [e for e in events(client, task_id) if e["type"] == "cancelled"]
    return str(ended["data"]["reason"])


def queued_data(client: redis.Redis, task_id: str) -> dict[str, Any]:
    (queued,) = [e for e in events(client, task_id) if e["type"] == "queued"]
    return dict(queued["data"])


def one_call(simulator: SimulatorProcess, marker: str) -> dict[str, Any]:
    calls = wait_until(lambda: simulator.requests(tag=marker), 10, what=f"V1 call {marker}")
    assert len(calls) == 1, calls
    return dict(calls[0])


def start_streaming(api: httpx.Client, session: str, marker: str) -> str:
    """A task of `session` that is running and has streamed some output."""
    task_id = submit(api, f"long {STREAM} [sim:tag={marker}]", session_id=session)["task_id"]
    wait_until(lambda: (api.get(f"/v1/tasks/{task_id}").json().get("partial") or "")
               .count("tok") >= 3, 20, what="some output")  # fmt: skip
    return str(task_id)


def wait_parked(client: redis.Redis, *task_ids: str) -> None:
    """The worker has received these tasks and set them aside (their conversation is
    busy), so the interrupting submit is what ends them, not a claim racing it."""
    for task_id in task_ids:
        wait_until(lambda t=task_id: client.hget(f"v2:task:{t}", "parked"), 10,
                   what=f"task {task_id} parked")  # fmt: skip


def post(api: httpx.Client, message: str, **fields: Any) -> httpx.Response:
    return api.post("/v1/tasks", json={"message": message, **fields})


def test_if_busy_without_a_session_or_with_an_unknown_policy_is_422(system: System) -> None:
    with system.client() as api:
        alone = post(api, "no conversation", if_busy="reject")
        unknown = post(api, "hm", session_id=f"s-{tag()}", if_busy="shout")
    assert alone.status_code == 422 and "if_busy: needs session_id" in alone.text
    assert unknown.status_code == 422
    assert unknown.json()["error"]["details"][0]["field"] == "if_busy"


def test_enqueue_runs_the_new_task_after_the_running_one(
    system: System, simulator: SimulatorProcess
) -> None:
    session, first, second = f"s-{tag()}", tag(), tag()
    with system.client() as api:
        a = submit(api, f"a [sim:chunks=20] [sim:chunk_delay=0.05] [sim:tag={first}]",
                   session_id=session)  # fmt: skip
        wait_for_state(api, a["task_id"], "running")
        b = submit(api, f"b [sim:tag={second}]", session_id=session, if_busy="enqueue")
        assert [wait_terminal(api, t["task_id"])["state"] for t in (a, b)] == ["succeeded"] * 2
    assert one_call(simulator, second)["started_at"] >= one_call(simulator, first)["ended_at"]


def test_reject_is_409_naming_the_running_task_and_v1_never_hears_of_it(
    system: System, simulator: SimulatorProcess
) -> None:
    session, marker = f"s-{tag()}", tag()
    body = {"message": f"later [sim:tag={marker}]", "session_id": session, "if_busy": "reject"}
    key = {"Idempotency-Key": f"k-{tag()}"}
    with system.client() as api:
        running = submit(api, f"busy [sim:chunks=20] [sim:chunk_delay=0.05] [sim:tag={marker}]",
                         session_id=session)["task_id"]  # fmt: skip
        wait_for_state(api, running, "running")
        refused = api.post("/v1/tasks", json=body, headers=key)
        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert error["type"] == "conversation_busy" and error["task_id"] == running
        assert running in error["message"]
        assert wait_terminal(api, running)["state"] == "succeeded"
        # Idle again: the same request (and Idempotency-Key: a refusal does not pin it) runs.
        accepted = api.post("/v1/tasks", json=body, headers=key)
        assert accepted.status_code == 202, accepted.text
        assert wait_terminal(api, accepted.json()["task_id"])["state"] == "succeeded"
    first, second = wait_until(lambda: simulator.requests(tag=marker)[1:] and
                               simulator.requests(tag=marker), 10, what="both calls")  # fmt: skip
    assert second["started_at"] >= first["ended_at"]  # nothing reached V1 while it was busy


def test_rejecting_submits_racing_for_an_idle_conversation_accept_exactly_one(
    system: System,
) -> None:
    session = f"s-{tag()}"

    def attempt(i: int) -> int:
        with system.client() as api:  # the winner stays live (V1 answers after 5 s)
            reply = post(api, f"race {i} [sim:delay=5]", session_id=session, if_busy="reject")
            return reply.status_code

    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(attempt, range(8)))
    assert codes == [202] + [409] * 7


def test_interrupt_cancels_the_conversation_keeping_partial_output_then_runs_the_new_task(
    system: System, simulator: SimulatorProcess, redis_client: redis.Redis
) -> None:
    session, old, waiting, new = f"s-{tag()}", tag(), tag(), tag()
    with system.client() as api:
        running = start_streaming(api, session, old)
        queued = submit(api, f"queued [sim:tag={waiting}]", session_id=session)["task_id"]
        wait_parked(redis_client, queued)
        reply = post(api, f"instead [sim:tag={new}]", session_id=session, if_busy="interrupt")
        assert reply.status_code == 202, reply.text
        newer = reply.json()["task_id"]
        stopped = wait_terminal(api, running, timeout=15)
        dropped = wait_terminal(api, queued, timeout=15)
        assert wait_terminal(api, newer)["state"] == "succeeded"
    assert stopped["state"] == "cancelled" and stopped["partial"].startswith("tok0 tok1 tok2 ")
    assert dropped["state"] == "cancelled"
    assert dropped["error"]["message"] == cancel_reason(redis_client, queued)
    assert cancel_reason(redis_client, queued) == f"interrupted by task {newer}"
    assert queued_data(redis_client, newer)["interrupted"] == [running, queued]
    # V1: the running call was closed, the queued task never sent, the new one after.
    interrupted = one_call(simulator, old)
    assert interrupted["disconnected"] is True
    assert simulator.requests(tag=waiting) == []
    assert one_call(simulator, new)["started_at"] >= interrupted["ended_at"]


def test_an_interrupted_running_task_names_the_new_task_in_its_cancelled_event(
    system: System, redis_client: redis.Redis
) -> None:
    session = f"s-{tag()}"
    with system.client() as api:
        running = start_streaming(api, session, tag())
        newer = submit(api, "instead", session_id=session, if_busy="interrupt")["task_id"]
        wait_terminal(api, running, timeout=15)
    assert cancel_reason(redis_client, running) == f"interrupted by task {newer}"


def test_replace_queued_drops_queued_and_paused_tasks_and_keeps_the_running_one(
    system: System, simulator: SimulatorProcess, redis_client: redis.Redis
) -> None:
    session, current, waiting, new = f"s-{tag()}", tag(), tag(), tag()
    with system.client() as api:
        running = submit(api, f"keep [sim:chunks=40] [sim:chunk_delay=0.05] [sim:tag={current}]",
                         session_id=session)["task_id"]  # fmt: skip
        wait_for_state(api, running, "running")
        queued = [submit(api, f"q{i} [sim:tag={waiting}]", session_id=session)["task_id"]
                  for i in range(2)]  # fmt: skip
        assert api.post(f"/v1/tasks/{queued[1]}/pause").json()["state"] == "paused"
        wait_parked(redis_client, *queued)
        newer = submit(api, f"latest [sim:tag={new}]", session_id=session,
                       if_busy="replace_queued")["task_id"]  # fmt: skip
        dropped = [wait_terminal(api, t, timeout=5) for t in queued]
        kept = wait_terminal(api, running)
        assert wait_terminal(api, newer)["state"] == "succeeded"
    assert [d["state"] for d in dropped] == ["cancelled", "cancelled"]
    assert {cancel_reason(redis_client, t) for t in queued} == {f"replaced by task {newer}"}
    assert queued_data(redis_client, newer)["replaced"] == queued
    assert kept["state"] == "succeeded"
    assert simulator.requests(tag=waiting) == []
    kept_call = one_call(simulator, current)
    assert kept_call["disconnected"] is False
    assert one_call(simulator, new)["started_at"] >= kept_call["ended_at"]
