"""The `openclaw` command, run as a subprocess against the running system
(`python -m openclaw_client ...` with OPENCLAW_URL / OPENCLAW_API_KEY in its environment)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.harness import API_KEY, ROOT, System, tag, wait_until


def openclaw(
    system: System, *args: str, api_key: str = API_KEY, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OPENCLAW_URL=system.url, OPENCLAW_API_KEY=api_key)
    return subprocess.run(
        [sys.executable, "-m", "openclaw_client", *args],
        env=env, cwd=ROOT, input=stdin, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_submit_follow_streams_the_text_and_ends_with_a_state_line(system: System) -> None:
    run = openclaw(system, "submit", "cli [sim:chunks=6] [sim:chunk_delay=0.05]", "--follow")
    assert run.returncode == 0, run.stderr
    assert run.stdout == "".join(f"tok{i} " for i in range(6)) + "\n"  # only the answer
    status = run.stderr.strip().splitlines()
    assert "queued" in status[1] and "running · attempt 1" in status[2]
    assert status[-1].startswith("✔ succeeded after ")


def test_json_output_is_one_object_per_line(system: System) -> None:
    session = f"cli-{tag()}"
    run = openclaw(
        system, "submit", "-", "--follow", "--json", "-s", session, stdin="in [sim:chunks=3]"
    )
    assert run.returncode == 0 and run.stderr == ""
    events = json_lines(run.stdout)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "queued" and events[-1]["type"] == "succeeded"
    task_id = events[0]["task_id"]
    assert events[-1]["data"]["result"]["content"] == "tok0 tok1 tok2 "
    assert json_lines(openclaw(system, "follow", task_id, "--json").stdout) == events

    got = json_lines(openclaw(system, "get", task_id, "--json").stdout)
    assert len(got) == 1 and got[0]["state"] == "succeeded" and got[0]["session_id"] == session
    waited = openclaw(system, "wait", task_id, "--json")
    assert waited.returncode == 0 and json_lines(waited.stdout) == got

    queued = json_lines(
        openclaw(system, "submit", "two [sim:chunks=1]", "-s", session, "--json").stdout
    )
    assert len(queued) == 1 and queued[0]["state"] == "queued" and queued[0]["queue"] == "short"
    assert (
        json.loads(openclaw(system, "wait", queued[0]["task_id"], "--json").stdout)["state"]
        == "succeeded"
    )
    listed = json_lines(openclaw(system, "list", "--session", session, "--json").stdout)
    assert [t["task_id"] for t in listed] == [queued[0]["task_id"], task_id]
    one = json_lines(openclaw(system, "list", "-s", session, "-n", "1", "--json").stdout)
    assert [t["task_id"] for t in one] == [queued[0]["task_id"]]


def test_a_failing_task_exits_non_zero(system: System) -> None:
    run = openclaw(system, "submit", "bad [sim:fail=400]", "--follow")
    assert run.returncode == 3, run.stderr
    assert run.stdout == ""
    final = run.stderr.strip().splitlines()[-1]
    assert final.startswith("✘ failed after ") and "v1_" in final
    as_json = openclaw(system, "submit", "bad [sim:fail=400]", "--follow", "--json")
    assert as_json.returncode == 3 and json_lines(as_json.stdout)[-1]["type"] == "failed"
    task_id = json_lines(as_json.stdout)[0]["task_id"]
    waited = openclaw(system, "wait", task_id)
    assert waited.returncode == 3 and "failed" in waited.stderr


def test_get_list_cancel_retry_wait_and_follow_by_id(system: System) -> None:
    session = f"cli-ctl-{tag()}"
    # A session runs one task at a time: the second stays queued behind the first. The
    # blocker would run 200 s (it is cancelled below): the seven commands before that take
    # ~3 s each on a loaded machine, and a 20 s blocker had ended before it was looked at.
    blocker = openclaw(
        system, "submit", "block [sim:chunks=4000] [sim:chunk_delay=0.05]", "-s", session
    )
    queued = openclaw(system, "submit", "after [sim:chunks=4]", "-s", session)
    blocker_id, task_id = blocker.stdout.strip(), queued.stdout.strip()
    assert str(uuid.UUID(task_id)) == task_id and "queued on short" in queued.stderr
    assert openclaw(system, "pause", task_id).stderr.strip() == f"{task_id}: paused"
    assert openclaw(system, "resume", task_id).stderr.strip() == f"{task_id}: queued"
    waited = openclaw(system, "wait", task_id, "--timeout", "1")
    assert waited.returncode == 6 and "did not end within 1 s" in waited.stderr
    assert openclaw(system, "cancel", task_id).stderr.strip() == f"{task_id}: cancelled"
    again = openclaw(system, "cancel", task_id)
    assert again.returncode == 1 and "409 conflict" in again.stderr
    assert openclaw(system, "retry", task_id).returncode == 0

    def blocker_running() -> bool:  # on a slow machine it may still wait for a worker
        shown = json_lines(openclaw(system, "get", blocker_id, "--json").stdout)
        return shown[0]["state"] == "running"

    wait_until(blocker_running, 120, 0.2, "the blocker running")
    stop = openclaw(system, "cancel", blocker_id)
    # A running task's cancel answers at once; the worker may already have stopped it.
    assert stop.returncode == 0, stop.stderr
    assert stop.stderr.startswith("cancel requested") or stop.stderr.strip() == (
        f"{blocker_id}: cancelled"
    )
    followed = openclaw(system, "follow", blocker_id)
    assert followed.returncode == 4 and "■ cancelled after" in followed.stderr
    done = openclaw(system, "wait", task_id, "--timeout", "60")
    assert done.returncode == 0 and done.stdout == "tok0 tok1 tok2 tok3 \n"
    assert "✔ succeeded after" in done.stderr
    shown = openclaw(system, "get", task_id)
    assert shown.returncode == 0 and "succeeded" in shown.stdout and "tok3" in shown.stdout

    def listed() -> bool:  # the SQL rows are written behind
        table = openclaw(system, "list", "-s", session)
        assert table.returncode == 0, table.stderr
        return task_id in table.stdout and blocker_id in table.stdout

    wait_until(listed, 30, 0.2, "both tasks in `openclaw list`")


def test_errors_exit_one_with_the_gateway_message(system: System) -> None:
    missing = str(uuid.uuid4())
    run = openclaw(system, "get", missing)
    assert run.returncode == 1 and f"404 not_found: no task '{missing}'" in run.stderr
    as_json = openclaw(system, "get", missing, "--json")
    assert as_json.returncode == 1 and as_json.stdout == ""
    assert json.loads(as_json.stderr)["error"]["type"] == "not_found"
    stranger = openclaw(system, "list", api_key="not-a-key")
    assert stranger.returncode == 1 and "401 unauthorized" in stranger.stderr
    bad_priority = openclaw(system, "submit", "hi", "--priority", "11")
    assert bad_priority.returncode == 2  # refused by the command line itself


def test_console_script_is_installed(system: System) -> None:
    script = Path(sys.executable).with_name("openclaw")
    env = dict(os.environ, OPENCLAW_URL=system.url, OPENCLAW_API_KEY=API_KEY)
    run = subprocess.run([script, "--help"], env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0
    for command in ("submit", "follow", "wait", "get", "list", "cancel", "retry"):
        assert command in run.stdout
