"""Valkey Sentinel failover under load: a primary, its replica and three sentinels
(`testbed.valkey_sentinel`), and a system (gateway, worker, maintenance) that knows only
the sentinels (REDIS_SENTINELS; its REDIS_URL names a host that resolves nowhere).

The primary is SIGKILLed while tasks are submitted and run. Measured and printed: how long
until submits get 202 again and their tasks finish, and what happened to every task that
got a 202. Replication is asynchronous: a write acknowledged by the primary in the last
moment before it died may never reach the replica, so a task accepted in that moment can
be lost; the test counts those and checks that losses happen only around the kill.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from taskrecord import keys
from taskrecord.live_scripts import ScriptRunner
from taskrecord.redis_client import redis_client
from taskrecord.settings import Settings, get_settings
from taskrecord.states import QUEUES
from taskrecord.store.db import create_store_engine
from taskrecord.store.repo import TaskStore
from testbed.valkey_sentinel import SentinelGroup
from tests.harness import System, submit, wait_terminal, wait_until
from v1sim.process import SimulatorProcess

TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    with SentinelGroup(tmp_path_factory.mktemp("sentinel")) as started:
        yield started


@pytest.fixture(scope="module")
def failover_system(
    group: SentinelGroup, simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    workdir = tmp_path_factory.mktemp("sentinel-system")
    # The REDIS_URL override wins over System's own: only the sentinels lead to Valkey.
    system = System("redis://unused:1", 0, simulator.url, workdir, overrides=group.settings())
    with system:
        system.start_gateway()
        system.start_worker()
        system.start_maintenance()
        yield system


def test_scripts_load_again_on_a_server_without_them(group: SentinelGroup) -> None:
    """A promoted replica has none of the primary's loaded scripts (NOSCRIPT): the runner
    loads them again. SCRIPT FLUSH makes the same state without a failover."""
    client = redis_client(_settings(group, 5))
    try:
        runner = ScriptRunner(client)
        source = "return redis.call('INCR', KEYS[1])"
        key = f"{keys.PREFIX}sentinel-test"
        client.delete(key)
        assert runner.run(source, [key], []) == 1
        client.script_flush()
        assert runner.run(source, [key], []) == 2
        client.delete(key)
    finally:
        client.close()


@dataclass
class Submitted:
    sent: float
    answered: float
    status: int  # 0: no HTTP answer
    task_id: str | None


def _load(system: System, stop: threading.Event, out: list[Submitted]) -> None:
    """About 15 submits a second, each a task of about half a second on V1."""
    with system.client() as api:
        number = 0
        while not stop.is_set():
            sent = time.monotonic()
            try:
                response = api.post("/v1/tasks", json={"message": f"f{number} [sim:delay=0.5]"})
                status = response.status_code
                task_id = response.json()["task_id"] if status == 202 else None
            except (httpx.HTTPError, ValueError):
                status, task_id = 0, None
            out.append(Submitted(sent, time.monotonic(), status, task_id))
            number += 1
            stop.wait(0.06)


def _states(api: httpx.Client, ids: list[str]) -> dict[str, dict[str, Any]]:
    found = {}
    for task_id in ids:
        response = api.get(f"/v1/tasks/{task_id}")
        found[task_id] = response.json() if response.status_code == 200 else {"state": "missing"}
    return found


def _settings(group: SentinelGroup, db: int = 0) -> Settings:
    return get_settings(**{name.lower(): value for name, value in group.settings(db).items()})


def _unfinished(live: redis.Redis, states: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """The tasks not ended, by why: `record_lost`, their live record is gone (written on
    the old primary only); `message_lost`, their Celery message is gone (a worker's BRPOP
    popped it on the old primary, whose answer died with it: it is in no queue, not in
    kombu's unacked hash, and the task is not parked); `open`, neither."""
    found: dict[str, list[str]] = {"record_lost": [], "message_lost": [], "open": []}
    messages: list[bytes] = [m for q in QUEUES for m in live.lrange(q, 0, -1)]  # type: ignore[misc]
    messages += live.hvals("unacked")  # type: ignore[arg-type]
    waiting = b"".join(messages)
    for task_id, body in states.items():
        if body["state"] in TERMINAL:
            continue
        fields = live.hgetall(keys.task_key(task_id))
        if not fields:
            found["record_lost"].append(task_id)
        elif (fields.get(b"state") == b"queued" and not fields.get(b"parked")
              and task_id.encode() not in waiting):  # fmt: skip
            found["message_lost"].append(task_id)
        else:
            found["open"].append(task_id)
    return found


def _label(body: dict[str, Any]) -> str:
    if body["state"] != "failed":
        return str(body["state"])
    return f"failed:{(body.get('error') or {}).get('type')}"


def test_primary_killed_mid_load(group: SentinelGroup, failover_system: System) -> None:
    submitted: list[Submitted] = []
    stop = threading.Event()
    loader = threading.Thread(target=_load, args=(failover_system, stop, submitted), daemon=True)
    loader.start()
    try:
        with failover_system.client() as api:
            wait_until(lambda: sum(s.status == 202 for s in submitted) >= 30, 20, 0.1, "load")
            old = group.primary_address()
            assert old is not None
            lag = group.replication_lag()  # sampled a moment before the kill
            killed = group.kill_primary()
            promoted_port = group.wait_for_new_primary(old[1], 30)
            promoted = time.monotonic()

            def served_again() -> Submitted | None:
                after = [s for s in submitted if s.sent > killed and s.status == 202]
                return after[0] if after else None

            first = wait_until(served_again, 30, 0.1, "a 202 after the kill")
            assert first.task_id is not None
            with_end = wait_until(
                lambda: _states(api, [first.task_id])[first.task_id]["state"] in TERMINAL,
                30, 0.1, "the first task accepted after the kill to end",
            )  # fmt: skip
            assert with_end
            recovered = time.monotonic()
            wait_until(lambda: sum(s.sent > recovered for s in submitted) >= 20, 20, 0.1, "load")
            stop.set()
            loader.join(10)
            accepted = [s for s in submitted if s.status == 202 and s.task_id]
            ids = [s.task_id for s in accepted if s.task_id]
            live = redis_client(_settings(group))
            try:
                # Leases (3 s here) and maintenance recover what the switch interrupted;
                # done once every task left open is one the switch itself lost.
                deadline = time.monotonic() + 30
                while True:
                    states = _states(api, ids)
                    why = _unfinished(live, states)
                    if not why["open"] or time.monotonic() > deadline:
                        break
                    time.sleep(0.5)  # pacing of a bounded poll (the deadline above)
            finally:
                live.close()
    finally:
        stop.set()
        loader.join(10)

    refused = [s for s in submitted if s.status != 202]
    outage = [s for s in refused if s.sent >= killed - 1]
    by_state: dict[str, int] = {}
    for body in states.values():
        by_state[_label(body)] = by_state.get(_label(body), 0) + 1
    answered = {s.task_id: round(s.answered - killed, 2) for s in accepted}
    print(
        f"\nsentinel failover: primary SIGKILLed at t=0 (down-after {group.down_after_ms} ms, "
        f"replica {lag} bytes behind just before); "
        f"replica promoted (port {promoted_port}) at t={promoted - killed:.2f} s; "
        f"first submit sent after the kill answered 202 at t={first.answered - killed:.2f} s, "
        f"that task ended by t={recovered - killed:.2f} s\n"
        f"submits: {len(submitted)} sent, {len(accepted)} got 202, {len(refused)} refused "
        f"({len(outage)} around the switch: {sorted({s.status for s in outage})}); "
        f"accepted tasks by state: {by_state}; of those not ended: live record lost "
        f"{[answered[t] for t in why['record_lost']]}, Celery message lost "
        f"{[answered[t] for t in why['message_lost']]} (202 answered at t= s), "
        f"open for no reason: {len(why['open'])}"
    )
    assert not why["open"], f"accepted, never ended: {[states[t] for t in why['open']]}"
    # What the switch may lose, it loses only in its last moment: a task accepted well
    # before the kill and lost would be a bug of ours.
    lost_at = [answered[t] for t in why["record_lost"] + why["message_lost"]]
    assert all(-1.0 < at <= 0.5 for at in lost_at), lost_at
    assert recovered - killed < 30


def test_writes_the_replica_never_got_are_lost_at_the_switch(
    group: SentinelGroup, failover_system: System
) -> None:
    """The loss window made wide on purpose: the replica is frozen (SIGSTOP) and cut off
    while tasks are accepted and run on the primary alone, then the primary is SIGKILLed
    and the thawed replica promoted. Those tasks' live records are gone; what the SQL store
    had received (rows copied by maintenance, final records written by workers) is left."""
    primary = group.primary_address()
    assert primary is not None
    name = next(n for n in ("primary", "replica") if group.ports[n] != primary[1])
    replica = group.nodes[name]
    if not replica.alive():  # killed by the test above: back as a replica, as ops would
        replica = group.restart_as_replica(name)
    store = TaskStore(create_store_engine(f"sqlite:///{failover_system.workdir / 'tasks.db'}"))
    # Frozen, and cut off: bytes already in the replica's socket would still reach it
    # when it thaws; with its link closed they stay in the primary's backlog only.
    os.kill(replica.pid, signal.SIGSTOP)
    try:
        group.client(primary[1]).client_kill_filter(_type="replica")
        with failover_system.client() as api:
            quick = [submit(api, f"quick {i} [sim:delay=0.2]")["task_id"] for i in range(3)]
            held = [submit(api, f"held {i} [sim:delay=3]")["task_id"] for i in range(3)]
            for task_id in quick:
                wait_terminal(api, task_id, timeout=20)
            wait_until(lambda: all(store.get(t) for t in held), 20, 0.1, "rows in SQL")
            killed = group.kill_primary()
    finally:
        os.kill(replica.pid, signal.SIGCONT)
    group.wait_for_new_primary(primary[1], 30)
    with failover_system.client() as api:

        def settled() -> dict[str, dict[str, Any]] | None:
            states = _states(api, held)
            return states if all(b["state"] in TERMINAL for b in states.values()) else None

        # Lease (3 s) + maintenance + margin: what recovery there is has happened by then.
        with contextlib.suppress(AssertionError):
            wait_until(settled, 5, 0.5, "the held tasks to end")
        ends = _states(api, quick + held)
    live = redis_client(_settings(group))
    survived = [t for t in quick + held if live.exists(keys.task_key(t))]
    live.close()
    store.engine.dispose()
    hanging = [t for t in held if ends[t]["state"] not in TERMINAL]
    print(
        f"\nreplica frozen and cut off, primary killed: {len(quick + held)} tasks accepted on "
        f"the primary alone; live records on the promoted replica: {len(survived)}; "
        f"{time.monotonic() - killed:.1f} s later, finished before the kill (from SQL): "
        f"{[_label(ends[t]) for t in quick]}; running at the kill: "
        f"{[_label(ends[t]) for t in held]} ({len(hanging)} left non-terminal)"
    )
    assert survived == [], "the replica got the writes: no loss window was made"
    assert all(ends[t]["state"] == "succeeded" for t in quick), ends  # SQL kept the results
    # Known gap (see deploy/README.md, "Failover with Sentinel"): a task whose live record
    # was lost keeps the SQL state it had; nothing moves it on yet. Only those may hang.
    assert all(ends[t]["state"] in ("queued", "running", *TERMINAL) for t in held), ends
