"""`follow` resumes by itself: across dropped connections and a gateway killed and started
again mid-follow, every event arrives once, in order, without a gap; it gives up after its
bounded wait and honours its deadline."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from deploy.embedded_valkey import EmbeddedValkey, free_port
from openclaw_client import (
    AsyncOpenClaw,
    Event,
    FollowPolicy,
    OpenClaw,
    RateLimitError,
    ServerUnavailable,
    WaitTimeout,
)
from tests.harness import API_KEY, System, new_system
from tests.tcp_proxy import TcpProxy
from v1sim.process import SimulatorProcess

LONG = "[sim:chunks=40] [sim:chunk_delay=0.1]"  # about 4 s of streamed text


def assert_whole_log(events: list[Event], task_id: str, result: str) -> None:
    """Seq 1..n without gap or repeat, one terminal event at the end, the whole text."""
    assert [e.seq for e in events] == list(range(1, len(events) + 1)), [e.seq for e in events]
    assert {e.task_id for e in events} == {task_id}
    assert [e.type for e in events if e.terminal] == ["succeeded"] and events[-1].terminal
    assert "".join(e.delta for e in events) == result == events[-1].data["result"]["content"]


@pytest.fixture(scope="module")
def own(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    """A system of this module's own, so its gateway can be killed: its worker serves only
    `short` and `priority` (tasks routed `long` stay queued), at most one task per queue."""
    system = new_system(valkey, simulator.url, tmp_path_factory.mktemp("sdk"), QUEUE_LIMIT="1")
    with system:
        system.start_gateway()
        system.start_worker(queues="priority,short")
        yield system


def test_follow_resumes_after_dropped_connections(system: System) -> None:
    with TcpProxy(system.gateway_port) as proxy, OpenClaw(proxy.url, API_KEY) as oc:
        task = oc.submit(f"drops {LONG}")
        events = []
        for event in oc.follow(task.task_id, timeout=60):
            events.append(event)
            if len(events) in (2, 5):
                assert proxy.drop() >= 1  # cut mid-stream, before the task ends
        done = oc.get(task.task_id)
        assert done.result is not None
        assert_whole_log(events, task.task_id, done.result.content)
        assert proxy.connections >= 3  # it did reconnect twice
        assert list(oc.follow(task.task_id, after_seq=5)) == events[5:]


def test_async_follow_resumes_after_dropped_connections(system: System) -> None:
    async def scenario(proxy: TcpProxy) -> None:
        async with AsyncOpenClaw(proxy.url, API_KEY) as aoc:
            task = await aoc.submit(f"async drops {LONG}")
            events = []
            async for event in aoc.follow(task.task_id, timeout=60):
                events.append(event)
                if len(events) in (2, 5):
                    assert proxy.drop() >= 1
            done = await aoc.get(task.task_id)
            assert done.result is not None
            assert_whole_log(events, task.task_id, done.result.content)

    with TcpProxy(system.gateway_port) as proxy:
        asyncio.run(scenario(proxy))
        assert proxy.connections >= 3


def test_follow_resumes_across_a_gateway_restart(own: System) -> None:
    with OpenClaw(own.url, API_KEY) as oc:
        task = oc.submit(f"restart {LONG}")
    seen: dict[str, list[Event]] = {"sync": [], "async": []}
    errors: list[BaseException] = []
    streaming = {name: threading.Event() for name in seen}

    def record(name: str, event: Event) -> None:
        seen[name].append(event)
        if event.type == "progress":
            streaming[name].set()

    def sync_follower() -> None:
        with OpenClaw(own.url, API_KEY) as client:
            for event in client.follow(task.task_id, timeout=120):
                record("sync", event)

    async def async_follow() -> None:
        async with AsyncOpenClaw(own.url, API_KEY) as client:
            async for event in client.follow(task.task_id, timeout=120):
                record("async", event)

    def guarded(target: object) -> None:
        try:
            target()  # type: ignore[operator]
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=guarded, args=(sync_follower,)),
        threading.Thread(target=guarded, args=(lambda: asyncio.run(async_follow()),)),
    ]
    for thread in threads:
        thread.start()
    assert all(flag.wait(60) for flag in streaming.values()), errors
    assert own.gateway is not None
    own.gateway.kill()  # SIGKILL mid-stream: no goodbye to the followers
    ended_before = {name: any(e.terminal for e in events) for name, events in seen.items()}
    own.start_gateway(port=own.gateway_port)
    for thread in threads:
        thread.join(120)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert ended_before == {"sync": False, "async": False}  # the restart was mid-follow
    with OpenClaw(own.url, API_KEY) as oc:
        done = oc.get(task.task_id)
        assert done.result is not None
        for events in seen.values():
            assert_whole_log(events, task.task_id, done.result.content)
        assert seen["sync"] == seen["async"] == list(oc.follow(task.task_id))


def test_follow_gives_up_after_its_bounded_wait() -> None:
    policy = FollowPolicy(initial_delay=0.05, max_delay=0.2, give_up_after=1.0)
    started = time.monotonic()
    oc = OpenClaw(f"http://127.0.0.1:{free_port()}", API_KEY, follow_policy=policy)
    with oc, pytest.raises(ServerUnavailable) as gone:
        list(oc.follow(str(uuid.uuid4())))
    assert gone.value.status is None and "lost the event stream" in gone.value.message
    assert 1.0 <= time.monotonic() - started < 10


def test_wait_and_follow_honour_their_deadline_and_a_full_queue_says_when_to_retry(
    own: System,
) -> None:
    with OpenClaw(own.url, API_KEY) as oc:
        # Routed to `long`, which no worker of this system consumes: it stays queued.
        stuck = oc.submit("never runs", estimated_seconds=600)
        assert stuck.queue == "long"
        with pytest.raises(RateLimitError) as full:
            oc.submit("one too many", estimated_seconds=600)
        assert full.value.status == 429 and full.value.retry_after == 10
        assert full.value.type == "queue_full"
        events: list[Event] = []
        started = time.monotonic()
        with pytest.raises(WaitTimeout):
            for event in oc.follow(stuck.task_id, timeout=1.5):
                events.append(event)
        assert 1.5 <= time.monotonic() - started < 10
        assert [e.type for e in events] == ["queued"]
        with pytest.raises(WaitTimeout):
            oc.wait(stuck.task_id, timeout=1)

        async def async_wait() -> None:
            async with AsyncOpenClaw(own.url, API_KEY) as aoc:
                await aoc.wait(stuck.task_id, timeout=1)

        with pytest.raises(WaitTimeout):
            asyncio.run(async_wait())
        assert oc.cancel(stuck.task_id).state == "cancelled"
