"""Dead letters: failed tasks listed by error type, and retried in bulk by filter, bounded and
reported, over REST (one tenant's) and with the real celery CLI (operators)."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from tests.harness import OTHER_API_KEY, ROOT, System, submit, tag, wait_listed, wait_terminal


def celery_cli(system: System, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celery", "-A", "tasks", *args],
        env=system.env(), cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def failed_in_session(api: httpx.Client, session: str, *failures: str) -> list[str]:
    """One task per `[sim:fail=...]` value in one conversation, each failed once (V1 answers
    the status the first time only: a retry succeeds). Returns their ids, oldest first."""
    ids = [
        submit(api, f"dead letter {tag()} [sim:fail={fail}x1]", session_id=session)["task_id"]
        for fail in failures
    ]
    for task_id in ids:
        assert wait_terminal(api, task_id)["state"] == "failed"
    wait_listed(api, ids, state="failed", session_id=session)  # the SQL copy caught up
    return ids


def listed(api: httpx.Client, session: str, error_type: str) -> list[str]:
    params = {"state": "failed", "error_type": error_type, "session_id": session}
    reply = api.get("/v1/tasks", params=params)
    assert reply.status_code == 200, reply.text
    return [task["task_id"] for task in reply.json()["tasks"]]


def test_failed_tasks_are_listed_by_error_type(system: System) -> None:
    session = f"dl-{tag()}"
    with system.client() as api, system.client(OTHER_API_KEY) as other:
        bad_1, bad_2, unauthorized = failed_in_session(api, session, "400", "400", "401")
        assert listed(api, session, "v1_bad_request") == [bad_2, bad_1]  # newest first
        assert listed(api, session, "v1_unauthorized") == [unauthorized]
        assert listed(api, session, "stalled") == []
        assert listed(other, session, "v1_bad_request") == []  # another tenant's


def test_bulk_retry_over_rest_is_bounded_and_reported(system: System) -> None:
    session = f"dl-{tag()}"
    body = {"state": "failed", "error_type": "v1_bad_request", "session_id": session}
    with system.client() as api, system.client(OTHER_API_KEY) as other:
        older, newer, unauthorized = failed_in_session(api, session, "400", "400", "401")
        assert other.post("/v1/tasks/retry", json=body).json()["matched"] == 0
        first = api.post("/v1/tasks/retry", json={**body, "limit": 1})
        assert first.status_code == 202, first.text
        assert first.json() == {"matched": 1, "retried": 1, "task_ids": [newer], "skipped": []}
        assert wait_terminal(api, newer)["state"] == "succeeded"
        rest = api.post("/v1/tasks/retry", json={**body, "limit": 1000}).json()
        assert rest == {"matched": 1, "retried": 1, "task_ids": [older], "skipped": []}
        done = wait_terminal(api, older)
        untouched = api.get(f"/v1/tasks/{unauthorized}").json()
        refusals = [
            api.post("/v1/tasks/retry", json={**body, "limit": limit}) for limit in (0, 1001)
        ] + [api.post("/v1/tasks/retry", json={"state": "succeeded"})]
    assert done["state"] == "succeeded" and done["attempts"] == 2
    assert untouched["state"] == "failed" and untouched["attempts"] == 1
    for refused in refusals:
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["type"] == "invalid_request"


def test_celery_cli_retries_by_filter_and_reports(system: System) -> None:
    session = f"dl-{tag()}"
    with system.client() as api:
        bad, unauthorized = failed_in_session(api, session, "400", "401")
        result = celery_cli(
            system, "retry", "--state", "failed", "--error-type", "v1_unauthorized",
            "--session-id", session, "--limit", "5",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        done = wait_terminal(api, unauthorized)
        still_failed = api.get(f"/v1/tasks/{bad}").json()
    assert result.stdout.splitlines() == [
        f"{unauthorized}: queued for a new attempt",
        "retried 1 of 1 matching tasks (0 skipped; --limit 5)",
    ]
    assert done["state"] == "succeeded" and done["attempts"] == 2
    assert still_failed["state"] == "failed"
    listed_cli = celery_cli(
        system, "list-tasks", "--state", "failed", "--error-type", "v1_bad_request", "--json",
        "--limit", "1000",
    )  # fmt: skip
    rows = [json.loads(line) for line in listed_cli.stdout.splitlines()]
    assert bad in {r["task_id"] for r in rows}
    assert {r["error"] for r in rows} == {"v1_bad_request"}
    unbounded = celery_cli(system, "retry", "--state", "failed", "--limit", "1001")
    neither = celery_cli(system, "retry", "--error-type", "v1_bad_request")
    assert unbounded.returncode == 2 and "1001 is not in the range 1<=x<=1000" in unbounded.stderr
    assert neither.returncode == 2 and "give one task id, or --state" in neither.stderr
