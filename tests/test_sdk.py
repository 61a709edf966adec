"""The Python SDK (`openclaw_client`) against the running system: every call, sync and
async, typed results, errors mapped from the envelope, configuration from the environment.
Following across dropped connections and gateway restarts: `test_sdk_follow.py`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from deploy.embedded_valkey import free_port
from openclaw_client import (
    AsyncOpenClaw,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    OpenClaw,
    ServerUnavailable,
    Task,
    ValidationError,
)
from tests.harness import API_KEY, ROOT, System, tag, wait_until
from tests.test_imports import imports_of

SERVER_SIDE = ("app", "tasks", "taskrecord")


@pytest.fixture
def oc(system: System) -> Iterator[OpenClaw]:
    with OpenClaw(system.url, API_KEY) as client:
        yield client


def test_sdk_imports_no_server_code() -> None:
    files = list((ROOT / "openclaw_client").rglob("*.py"))
    assert files and [f for f in files if imports_of(f)] == []
    # Importing the SDK and the CLI loads none of the gateway's or workers' modules.
    probe = (
        "import sys, openclaw_client, openclaw_client.cli; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({SERVER_SIDE!r})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_sync_submit_get_wait_list_and_pages(oc: OpenClaw) -> None:
    session = f"sdk-{tag()}"
    first = oc.submit(
        "hello [sim:chunks=3]", session_id=session, priority=6, estimated_seconds=3,
        timeout_seconds=60, metadata={"origin": "sdk"}, idempotency_key=f"key-{session}",
    )  # fmt: skip
    assert isinstance(first, Task) and first.state == "queued"
    assert (first.queue, first.priority, first.estimate_source) == ("short", 6, "client")
    again = oc.submit(
        "hello [sim:chunks=3]", session_id=session, priority=6, estimated_seconds=3,
        timeout_seconds=60, metadata={"origin": "sdk"}, idempotency_key=f"key-{session}",
    )  # fmt: skip
    assert again.task_id == first.task_id  # the same key and body: the same task

    done = oc.wait(first.task_id, timeout=60)
    assert done.state == "succeeded" and done.terminal and done.succeeded
    assert done.result is not None and done.result.content == "tok0 tok1 tok2 "
    assert done.metadata == {"origin": "sdk"} and done.attempts == 1
    assert done.finished_at is not None and done.created_at <= done.finished_at
    assert oc.get(first.task_id) == done

    second = oc.submit(
        messages=[{"role": "user", "content": "more [sim:chunks=2]"}], session_id=session
    )
    assert oc.wait(second.task_id, timeout=60).state == "succeeded"
    newest_first = [second.task_id, first.task_id]

    def both_listed() -> bool:
        return [t.task_id for t in oc.list(session_id=session).tasks] == newest_first

    wait_until(both_listed, 30, 0.2, "both tasks in the list")  # the SQL row is written behind
    page = oc.list(session_id=session, limit=1)
    assert [t.task_id for t in page.tasks] == [second.task_id] and page.next_cursor
    rest = oc.list(session_id=session, limit=1, cursor=page.next_cursor)
    assert [t.task_id for t in rest.tasks] == [first.task_id]
    pages = list(oc.pages(session_id=session, limit=1))
    assert [[t.task_id for t in p.tasks] for p in pages] == [[second.task_id], [first.task_id]]
    assert [t.task_id for t in oc.iter_tasks(session_id=session, page_size=1)] == newest_first
    assert oc.list(session_id=session, state="failed").tasks == []


def test_sync_pause_resume_cancel_retry(oc: OpenClaw) -> None:
    session = f"ctl-{tag()}"
    # A session runs one task at a time: the second stays queued behind the first.
    blocker = oc.submit("block [sim:chunks=400] [sim:chunk_delay=0.05]", session_id=session)
    queued = oc.submit("next [sim:chunks=2]", session_id=session)
    assert oc.pause(queued.task_id).state == "paused"
    assert oc.resume(queued.task_id).state == "queued"
    assert oc.cancel(queued.task_id).state == "cancelled"
    with pytest.raises(ConflictError) as refused:
        oc.pause(queued.task_id)
    assert refused.value.status == 409 and refused.value.state == "cancelled"
    assert oc.retry(queued.task_id).state == "queued"

    first_text = next(e for e in oc.follow(blocker.task_id, timeout=60) if e.type == "progress")
    assert first_text.delta.startswith("tok0")
    stopping = oc.cancel(blocker.task_id)  # running: the worker closes its V1 call
    # The worker may already have closed the call by the time the answer is read.
    assert (stopping.state == "running" and stopping.cancel_requested) or (
        stopping.state == "cancelled"
    )
    stopped = oc.wait(blocker.task_id, timeout=60)
    assert stopped.state == "cancelled" and stopped.partial
    retried = oc.wait(queued.task_id, timeout=60)
    assert retried.state == "succeeded" and retried.attempts == 1
    with pytest.raises(ConflictError):
        oc.cancel(retried.task_id)


def test_async_client_offers_every_call(system: System) -> None:
    session = f"async-{tag()}"

    async def listed(aoc: AsyncOpenClaw, count: int) -> list[str]:
        for _ in range(150):  # the SQL rows are written behind
            ids = [t.task_id async for t in aoc.iter_tasks(session_id=session, page_size=1)]
            if len(ids) >= count:
                return ids
            await asyncio.sleep(0.2)
        raise AssertionError(f"{count} tasks never listed")

    async def scenario() -> None:
        async with AsyncOpenClaw(system.url, API_KEY) as aoc:
            block = "block [sim:chunks=400] [sim:chunk_delay=0.05]"
            blocker = await aoc.submit(block, session_id=session)
            queued = await aoc.submit("next [sim:chunks=2]", session_id=session, priority=4)
            steps = [
                (await aoc.pause(queued.task_id)).state,
                (await aoc.resume(queued.task_id)).state,
                (await aoc.cancel(queued.task_id)).state,
                (await aoc.retry(queued.task_id)).state,
            ]
            assert steps == ["paused", "queued", "cancelled", "queued"]
            events = []
            async for event in aoc.follow(blocker.task_id, timeout=60):
                events.append(event)
                if event.type == "progress" and len(events) == 3:
                    assert (await aoc.cancel(blocker.task_id)).cancel_requested
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert events[-1].type == "cancelled" and events[-1].data["partial"]

            done = await aoc.wait(queued.task_id, timeout=60)
            assert done.state == "succeeded" and await aoc.get(queued.task_id) == done
            replay = [e async for e in aoc.follow(blocker.task_id, after_seq=2, timeout=30)]
            assert replay == events[2:]

            assert await listed(aoc, 2) == [queued.task_id, blocker.task_id]
            pages = [p async for p in aoc.pages(session_id=session, limit=1)]
            assert [len(p.tasks) for p in pages] == [1, 1] and pages[-1].next_cursor is None
            gone = await aoc.list(session_id=session, state="cancelled")
            assert [t.task_id for t in gone.tasks] == [blocker.task_id]
            with pytest.raises(NotFoundError):
                await aoc.get(str(uuid.uuid4()))

    asyncio.run(scenario())


def test_errors_map_from_the_envelope(oc: OpenClaw, system: System) -> None:
    with pytest.raises(NotFoundError) as missing:
        oc.get(str(uuid.uuid4()))
    assert (missing.value.status, missing.value.type) == (404, "not_found")
    with pytest.raises(ValidationError) as empty:
        oc.submit("   ")
    assert empty.value.status == 422 and "empty" in empty.value.message
    with pytest.raises(ValidationError) as priority:
        oc.submit("hi", priority=11)
    assert priority.value.details["details"][0]["field"] == "priority"
    key = f"idem-{tag()}"
    oc.submit("one [sim:chunks=1]", idempotency_key=key)
    with pytest.raises(ConflictError) as reused:
        oc.submit("another body", idempotency_key=key)
    assert reused.value.type == "idempotency_conflict"
    with OpenClaw(system.url, "not-a-key") as stranger, pytest.raises(AuthenticationError) as auth:
        stranger.get(str(uuid.uuid4()))
    assert auth.value.status == 401
    nowhere = OpenClaw(f"http://127.0.0.1:{free_port()}", API_KEY)
    with nowhere, pytest.raises(ServerUnavailable) as down:
        nowhere.get(str(uuid.uuid4()))
    assert down.value.status is None and down.value.type == "unreachable"


def test_configuration_comes_from_the_environment(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENCLAW_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="OPENCLAW_API_KEY"):
        OpenClaw(system.url)
    monkeypatch.setenv("OPENCLAW_URL", system.url)
    monkeypatch.setenv("OPENCLAW_API_KEY", API_KEY)
    with OpenClaw() as from_env:
        task = from_env.submit("env [sim:chunks=1]")
        assert from_env.wait(task.task_id, timeout=60).state == "succeeded"
    monkeypatch.setenv("OPENCLAW_URL", "127.0.0.1:8000")
    with pytest.raises(ConfigurationError, match="http"):
        OpenClaw()
