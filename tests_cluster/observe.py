"""What the scenarios count: tasks submitted, their live records, their ends, V1 calls (the
simulator's own records, by each task's `[sim:tag=...]`), events; and the printed report."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import redis

from taskrecord import keys
from testbed.process import wait_until
from testbed.system import API_KEY
from v1sim.process import SimulatorProcess

TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")


def api(base_url: str) -> httpx.Client:
    return httpx.Client(
        base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=15,
        trust_env=False,
    )  # fmt: skip


def new_tags(scenario: str, count: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"{scenario}-{run}-{i}" for i in range(count)]


def submit(client: httpx.Client, text: str, tag: str, **fields: Any) -> str:
    response = client.post("/v1/tasks", json={"message": f"{text} [sim:tag={tag}]", **fields})
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    return task_id


def live(client: redis.Redis, ids: list[str]) -> dict[str, dict[str, str]]:
    """Each task's live hash (decode_responses client)."""
    pipe = client.pipeline(transaction=False)
    for task_id in ids:
        pipe.hgetall(keys.task_key(task_id))
    return dict(zip(ids, pipe.execute(), strict=True))


def events(client: redis.Redis, task_id: str) -> list[dict[str, Any]]:
    """The task's event log as Redis keeps it (every event the lua scripts emitted)."""
    entries: list[tuple[str, dict[str, str]]] = client.xrange(keys.events_key(task_id))  # type: ignore[assignment]
    return [json.loads(fields["e"]) for _id, fields in entries]


def running_on(snapshot: dict[str, dict[str, str]], host: str) -> dict[str, dict[str, str]]:
    """The tasks of a `live` snapshot running on a worker of `host` (its name: host@...)."""
    prefix = f"{host}@"
    return {t: f for t, f in snapshot.items()
            if f.get("state") == "running" and f.get("worker", "").startswith(prefix)}  # fmt: skip


def wait_all_terminal(
    client: httpx.Client, ids: list[str], timeout: float
) -> dict[str, dict[str, Any]]:
    """Every task's final body; fails naming the tasks that never ended (lost)."""
    ended: dict[str, dict[str, Any]] = {}
    last: dict[str, Any] = {}

    def all_ended() -> bool:
        for task_id in ids:
            if task_id in ended:
                continue
            try:
                response = client.get(f"/v1/tasks/{task_id}")
            except httpx.HTTPError:
                return False
            last[task_id] = response.json()
            if response.status_code == 200 and response.json()["state"] in TERMINAL:
                ended[task_id] = response.json()
        return len(ended) == len(ids)

    try:
        wait_until(all_ended, timeout, 0.5, "every task to end")
    except AssertionError:
        lost = [last.get(t, t) for t in ids if t not in ended]
        raise AssertionError(f"{len(lost)} of {len(ids)} tasks never ended: {lost[:3]}") from None
    return ended


def v1_calls(sim: SimulatorProcess, tags: list[str]) -> dict[str, list[dict[str, Any]]]:
    """The simulator's records of each tag's calls (oldest first)."""
    by_tag: dict[str, list[dict[str, Any]]] = {tag: [] for tag in tags}
    for record in sim.requests():
        if record.get("tag") in by_tag:
            by_tag[record["tag"]].append(record)
    return by_tag


def states(bodies: dict[str, dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for body in bodies.values():
        counts[body["state"]] = counts.get(body["state"], 0) + 1
    return counts


def report(scenario: str, **counts: object) -> None:
    """One line a note can quote (pytest -s shows it; `make test-cluster` passes -s)."""
    figures = " ".join(f"{name}={value}" for name, value in counts.items())
    print(f"\n[cluster] {scenario}: {figures}", flush=True)


def since(start: float) -> float:
    return round(time.time() - start, 2)


SHORT_HOSTS = ("w-short", "w-long")  # both take `short`: either can lose its tasks


def target_host(
    snapshot: dict[str, dict[str, str]],
    sim: SimulatorProcess,
    tags: dict[str, str],
    silent_tags: set[str],
) -> str | None:
    """The `short` host to break: once every task is claimed, one that runs a task with
    output and two silent tasks (tags in `silent_tags`) whose V1 calls are under way (the
    simulator has them).

    Quiet means a silent task, not any task without output yet: a talking task in the
    moment before its first chunk looks the same and speaks right after (a run here picked
    a host on two of those and had no silent victim at the kill).

    Only once every task is claimed: a worker killed while it still fetches can lose the
    message it takes (kombu's Redis transport pops it, then records it as unacked: a gap
    deploy/README.md reports)."""
    if any(f.get("state") == "queued" for f in snapshot.values()):
        return None
    for host in SHORT_HOSTS:
        running = running_on(snapshot, host)
        spoken = {t for t, f in running.items() if f.get("output_started") == "1"}
        quiet = {
            t
            for t, f in running.items()
            if tags[t] in silent_tags and f.get("output_started") == "0"
        }
        if quiet and spoken:
            called = {tag for tag, c in v1_calls(sim, [tags[t] for t in quiet]).items() if c}
            if sum(tags[t] in called for t in quiet) >= 2:
                return host
    return None


def wait_for_target_host(
    rds: redis.Redis,
    sim: SimulatorProcess,
    tags: dict[str, str],
    silent_tags: set[str],
    timeout: float = 30,
) -> str:
    """`target_host` once it finds one; on timeout the failure says how the tasks were
    spread (per host: silent and talking tasks running, talking ones with output), so a
    run where no host qualified can be told from one where nothing was claimed."""
    try:
        host: str = wait_until(
            lambda: target_host(live(rds, list(tags)), sim, tags, silent_tags),
            timeout, 0.2, "a short host to run silent and talking tasks",
        )  # fmt: skip
        return host
    except AssertionError as timed_out:
        snapshot = live(rds, list(tags))
        spread = {}
        for host in SHORT_HOSTS:
            running = running_on(snapshot, host)
            spread[host] = {
                "silent": sum(tags[t] in silent_tags for t in running),
                "talking": sum(tags[t] not in silent_tags for t in running),
                "spoken": sum(f.get("output_started") == "1" for f in running.values()),
            }
        by_state: dict[str, int] = {}
        for fields in snapshot.values():
            state = fields.get("state", "?")
            by_state[state] = by_state.get(state, 0) + 1
        raise AssertionError(f"{timed_out}; states={by_state} running={spread}") from None
