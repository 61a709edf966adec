"""The V1 simulator's gates over real HTTP: disconnects abort runs, capacity holds, records."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.test_v1sim_support import (
    CAPACITY,
    CHAT,
    MAIN,
    chat,
    new_tag,
    one_record,
    post_all,
    wait_disconnected,
    wait_for,
)
from v1sim.process import SimulatorProcess

# --- disconnects and capacity ----------------------------------------------------------------


def test_stream_disconnect_aborts_run_and_frees_session(sim: SimulatorProcess) -> None:
    tag, user = new_tag(), f"conv-{new_tag()}"
    body = chat(f"hi [sim:delay=30] [sim:tag={tag}]", stream=True, user=user)
    with httpx.Client(base_url=sim.url, timeout=10, trust_env=False) as http:
        with http.stream("POST", CHAT, json=body, headers=MAIN) as response:
            first = next(response.iter_lines())
            assert json.loads(first.removeprefix("data: "))["choices"][0]["delta"] == {
                "role": "assistant"
            }
        record = wait_disconnected(sim, tag)
        assert record["status"] == 200 and record["ended_at"] - record["started_at"] < 5
        # The aborted run released its session at once: a follow-up is not queued behind it.
        follow_up = http.post(CHAT, json=chat("again", user=user), headers=MAIN, timeout=5)
        assert follow_up.status_code == 200
    wait_for(lambda: sim.stats()["active"] == 0)


def test_non_stream_disconnect_during_delay(sim: SimulatorProcess) -> None:
    tag = new_tag()
    with (
        httpx.Client(base_url=sim.url, timeout=0.3, trust_env=False) as http,
        pytest.raises(httpx.ReadTimeout),
    ):
        http.post(CHAT, json=chat(f"hi [sim:delay=30] [sim:tag={tag}]"), headers=MAIN)
    record = wait_disconnected(sim, tag)
    assert record["status"] is None and record["admitted_at"] is not None
    wait_for(lambda: sim.stats()["active"] == 0)


def test_disconnect_while_waiting_for_capacity(sim: SimulatorProcess) -> None:
    blockers, waiter = new_tag(), new_tag()

    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=sim.url, timeout=30, trust_env=False) as http:
            body = chat(f"hold [sim:delay=30] [sim:tag={blockers}]")
            tasks = [
                asyncio.create_task(http.post(CHAT, json=body, headers=MAIN))
                for _ in range(CAPACITY)
            ]
            await asyncio.to_thread(wait_for, lambda: sim.stats()["active"] == CAPACITY)
            with pytest.raises(httpx.ReadTimeout):
                body = chat(f"wait [sim:tag={waiter}]")
                await http.post(CHAT, json=body, headers=MAIN, timeout=0.3)
            await asyncio.to_thread(wait_disconnected, sim, waiter)
            for task in tasks:
                task.cancel()  # closes the connections: the blockers are aborted too
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(scenario())
    assert one_record(sim, waiter)["admitted_at"] is None
    wait_for(lambda: sim.stats()["active"] == 0 and sim.stats()["in_flight"] == 0)
    assert all(r["disconnected"] for r in sim.requests(blockers))


def test_capacity_is_never_exceeded(sim: SimulatorProcess) -> None:
    sim.reset()
    tag = new_tag()
    bodies = [chat(f"hi {i} [sim:delay=0.3] [sim:tag={tag}]") for i in range(3 * CAPACITY)]
    assert asyncio.run(post_all(sim.url, bodies)) == [200] * len(bodies)
    stats = sim.stats()
    assert stats["peak_active"] == CAPACITY
    assert stats["peak_in_flight"] > CAPACITY  # the surplus waited inside the simulator
    assert stats["total"] == len(bodies) and stats["active"] == 0


def test_refused_records_keep_no_text_and_reset_clears_counters(
    sim: SimulatorProcess, client: httpx.Client
) -> None:
    secret, tag = f"secret-{new_tag()}", new_tag()
    body = chat(f"{secret} [sim:fail=429x1] [sim:tag={tag}] [sim:mood=grim]")
    assert client.post(CHAT, json=body, headers=MAIN).status_code == 429
    record = one_record(sim, tag)
    assert secret not in json.dumps(record) and "grim" not in json.dumps(record)
    assert record["unknown_directives"] == ["mood"] and record["model_input"] == []
    assert client.post(CHAT, json=body, headers=MAIN).status_code == 200
    sim.reset()
    assert sim.requests() == [] and sim.stats()["total"] == 0
    assert client.post(CHAT, json=body, headers=MAIN).status_code == 429  # counter forgotten
