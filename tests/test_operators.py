"""Operators' tools: the real celery CLI and Flower reflect into the task record."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from deploy.embedded_valkey import free_port
from tests.harness import (
    ROOT,
    ManagedProcess,
    System,
    submit,
    tag,
    wait_for_state,
    wait_terminal,
    wait_until,
)
from tests.queue_pause import paused, resume_queue
from v1sim.process import SimulatorProcess

FLOWER_AUTH = ("ops", "flower-test-pass")


def celery_cli(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tasks", *args],
        env=system.env(), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def worker_log(system: System) -> str:
    return next(p for p in system.processes if p.name.startswith("worker")).log()


@pytest.fixture
def paused_long(system: System) -> Iterator[None]:
    """The `long` queue paused (shown by a witness task that stays queued), then resumed."""
    with paused(system, "long"):
        yield


def assert_received_but_not_run(system: System, task_id: str) -> None:
    """Wait until the resumed queue has handed the worker this task's message and the
    worker dropped it (Celery's revoke list, or our check of the record); the caller then
    checks that V1 was never called."""
    dropped = (f"Discarding revoked task: openclaw.run[{task_id}", f"task {task_id} not run")
    wait_until(lambda: any(line in worker_log(system) for line in dropped), 15,
               what="the worker to receive and drop the cancelled task's message")  # fmt: skip


def test_cli_revoke_cancels_a_queued_task(
    system: System, simulator: SimulatorProcess, paused_long: None
) -> None:
    marker = tag()
    with system.client() as api:
        task = submit(api, f"revoke me [sim:tag={marker}]", estimated_seconds=900)
        result = celery_cli(system, "control", "revoke", task["task_id"])
        assert result.returncode == 0, result.stderr
        done = wait_terminal(api, task["task_id"], timeout=15)
    assert done["state"] == "cancelled"
    assert done["error"]["message"] == "revoked by an operator"
    resume_queue(system, "long")
    assert_received_but_not_run(system, task["task_id"])
    assert simulator.requests(tag=marker) == []


def test_cli_terminate_stops_a_running_task(system: System, simulator: SimulatorProcess) -> None:
    marker = tag()
    with system.client() as api:
        task = submit(api, f"stop me [sim:chunks=300] [sim:chunk_delay=0.05] [sim:tag={marker}]")
        wait_for_state(api, task["task_id"], "running")
        result = celery_cli(system, "control", "terminate", "SIGTERM", task["task_id"])
        assert result.returncode == 0, result.stderr
        done = wait_terminal(api, task["task_id"], timeout=15)
    assert done["state"] == "cancelled"
    assert done["error"]["message"] in ("terminated by an operator", "revoked by an operator")
    wait_until(lambda: any(r["disconnected"] for r in simulator.requests(tag=marker)), 5,
               what="V1 saw the disconnect")  # fmt: skip


def test_cli_retry_and_list_tasks(system: System, simulator: SimulatorProcess) -> None:
    marker = tag()
    with system.client() as api:
        task = submit(api, f"retry me via cli [sim:fail=400x1] [sim:tag={marker}]")
        assert wait_terminal(api, task["task_id"])["state"] == "failed"
        listed = celery_cli(system, "list-tasks", "--state", "failed", "--json", "--limit", "500")
        assert listed.returncode == 0, listed.stderr
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert any(r["task_id"] == task["task_id"] and r["error"] == "v1_bad_request"
                   for r in rows)  # fmt: skip
        assert "retry me" not in listed.stdout
        result = celery_cli(system, "retry", task["task_id"])
        assert result.returncode == 0, result.stderr
        done = wait_terminal(api, task["task_id"])
        again = celery_cli(system, "retry", task["task_id"])
    assert done["state"] == "succeeded" and done["attempts"] == 2
    assert again.returncode != 0 and "succeeded" in again.stderr
    assert [r["status"] for r in simulator.requests(tag=marker)] == [400, 200]


@pytest.fixture(scope="module")
def flower(system: System) -> Iterator[str]:
    port = free_port()
    proc = ManagedProcess(
        "flower",
        [sys.executable, "-m", "celery", "-A", "tasks", "flower", "--address=127.0.0.1",
         f"--port={port}"],
        system.env(FLOWER_BASIC_AUTH=":".join(FLOWER_AUTH)),
        system.workdir / "flower.log",
    ).start()  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    try:
        proc.wait_for_http(f"{url}/api/workers", 60, auth=FLOWER_AUTH)
        # Flower answers before its event receiver listens: wait until it sees a task.
        with system.client() as api:
            warm: list[str] = []

            def sees_a_task() -> bool:
                if any(flower_task(url, task_id) for task_id in warm[-3:]):
                    return True
                warm.append(submit(api, "warm-up")["task_id"])
                return False

            wait_until(sees_a_task, 60, 1.0, "flower receiving events")
        yield url
    finally:
        proc.stop()


def flower_task(url: str, task_id: str) -> dict[str, Any] | None:
    reply = httpx.get(f"{url}/api/task/info/{task_id}", auth=FLOWER_AUTH, timeout=5)
    return reply.json() if reply.status_code == 200 else None  # type: ignore[no-any-return]


def test_flower_shows_tasks_without_message_text(system: System, flower: str) -> None:
    secret = f"SECRET-{tag()}"
    with system.client() as api:
        task = submit(api, f"{secret} [sim:chunks=2]")
        wait_terminal(api, task["task_id"])
    info = wait_until(lambda: flower_task(flower, task["task_id"]), 30, 0.2, "flower saw it")
    listing = httpx.get(f"{flower}/api/tasks", auth=FLOWER_AUTH, timeout=10)
    assert httpx.get(f"{flower}/api/tasks", timeout=10).status_code == 401
    for text in (json.dumps(info), listing.text):
        assert secret not in text
        assert "sim-token" not in text
    assert task["task_id"] in info["args"]
    assert info["name"] == "openclaw.run"


def test_flower_revoke_is_reflected_in_the_task_record(
    system: System, simulator: SimulatorProcess, flower: str, paused_long: None
) -> None:
    marker = tag()
    with system.client() as api:
        task = submit(api, f"revoke from flower [sim:tag={marker}]", estimated_seconds=900)
        reply = httpx.post(f"{flower}/api/task/revoke/{task['task_id']}", auth=FLOWER_AUTH,
                           timeout=10)  # fmt: skip
        assert reply.status_code == 200
        done = wait_terminal(api, task["task_id"], timeout=15)
    assert done["state"] == "cancelled"
    assert done["error"]["message"] == "revoked by an operator"
    resume_queue(system, "long")
    assert_received_but_not_run(system, task["task_id"])
    assert simulator.requests(tag=marker) == []
