"""Bad input gets a clear 4xx in one envelope; never a 500. Tenants see only their tasks."""

from __future__ import annotations

import uuid

import httpx
import pytest

from taskrecord.settings import DEV_METRICS_TOKEN
from tests.harness import API_KEY, OTHER_API_KEY, System, submit, wait_listed, wait_terminal

METRICS_AUTH = {"Authorization": f"Bearer {DEV_METRICS_TOKEN}"}


@pytest.mark.parametrize(
    ("body", "status", "error_type", "names"),
    [
        ({"message": ""}, 422, "invalid_request", "message is empty"),
        ({"message": "   "}, 422, "invalid_request", "message is empty"),
        ({}, 422, "invalid_request", "exactly one of `message` or `messages`"),
        (
            {"message": "a", "messages": [{"role": "user", "content": "b"}]},
            422,
            "invalid_request",
            "exactly one",
        ),
        ({"messages": []}, 422, "invalid_request", "no non-empty user message"),
        (
            {"messages": [{"role": "robot", "content": "x"}]},
            422,
            "invalid_request",
            "messages.0.role",
        ),
        ({"message": "hi", "priority": 11}, 422, "invalid_request", "priority"),
        ({"message": "hi", "priority": -1}, 422, "invalid_request", "priority"),
        ({"message": "hi", "priority": "high"}, 422, "invalid_request", "priority"),
        (
            {"message": "hi", "priority": True},
            422,
            "invalid_request",
            "priority: Input should be a valid integer",
        ),
        (
            {"message": "hi", "priority": "5"},
            422,
            "invalid_request",
            "priority: Input should be a valid integer",
        ),
        ({"message": "hi", "timeout_seconds": True}, 422, "invalid_request", "timeout_seconds"),
        (
            {"message": "hi", "metadata": {str(i): i for i in range(33)}},
            422,
            "invalid_request",
            "metadata: has 33 keys; the limit is 32",
        ),
        ({"message": "hi", "estimated_seconds": 0}, 422, "invalid_request", "estimated_seconds"),
        ({"message": "hi", "agent_id": "../etc"}, 422, "invalid_request", "agent_id"),
        ({"message": "hi", "colour": "red"}, 422, "invalid_request", "unknown field(s): colour"),
        ({"message": "x" * 100_001}, 413, "message_too_large", "limit is 100000"),
        (
            {"messages": [{"role": "user", "content": "x" * 50_001}] * 2},
            413,
            "message_too_large",
            "the messages have together 100002 characters; the limit is 100000",
        ),
    ],
)
def test_bad_submission_is_refused_with_named_problem(
    system: System, body: dict[str, object], status: int, error_type: str, names: str
) -> None:
    with system.client() as api:
        response = api.post("/v1/tasks", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == error_type
    assert names in error["message"]


def test_malformed_json_is_a_400(system: System) -> None:
    with system.client() as api:
        response = api.post(
            "/v1/tasks", content=b'{"message": "hi"', headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "malformed_json"


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic dGVzdDp0ZXN0", "Bearer"])
def test_missing_or_wrong_api_key_is_401(system: System, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = httpx.post(f"{system.url}/v1/tasks", json={"message": "hi"}, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["type"] == "unauthorized"


def test_unknown_task_ids_are_404(system: System) -> None:
    with system.client() as api:
        for task_id in (str(uuid.uuid4()), "not-a-uuid"):
            response = api.get(f"/v1/tasks/{task_id}")
            assert response.status_code == 404
            assert response.json()["error"]["type"] == "not_found"


def test_second_api_key_cannot_see_first_keys_task(system: System) -> None:
    with system.client(API_KEY) as alpha, system.client(OTHER_API_KEY) as beta:
        task = submit(alpha, "private", session_id="s-private")
        assert beta.get(f"/v1/tasks/{task['task_id']}").status_code == 404
        assert beta.post(f"/v1/tasks/{task['task_id']}/cancel").status_code == 404
        wait_terminal(alpha, task["task_id"])
        mine = wait_listed(alpha, [task["task_id"]], session_id="s-private")
        assert [t["task_id"] for t in mine] == [task["task_id"]]
        assert beta.get(f"/v1/tasks/{task['task_id']}").status_code == 404
        listed = beta.get("/v1/tasks", params={"session_id": "s-private"}).json()
        assert listed["tasks"] == []


def test_list_filters_by_session_and_state_and_pages(system: System) -> None:
    session = f"s-{uuid.uuid4().hex[:8]}"
    with system.client() as api:
        ids = [submit(api, f"m{i}", session_id=session)["task_id"] for i in range(5)]
        for task_id in ids:
            wait_terminal(api, task_id)
        wait_listed(api, ids, session_id=session, state="succeeded")  # the SQL copy caught up
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"session_id": session, "limit": 2, "state": "succeeded"}
            if cursor:
                params["cursor"] = cursor
            page = api.get("/v1/tasks", params=params).json()
            seen += [t["task_id"] for t in page["tasks"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert sorted(seen) == sorted(ids) and len(seen) == 5
        assert api.get("/v1/tasks", params={"state": "nonsense"}).status_code == 422
        assert api.get("/v1/tasks", params={"cursor": "zzz"}).status_code == 422
        assert api.get("/v1/tasks", params={"limit": 0}).status_code == 422


def test_idempotency_key_returns_the_same_task(system: System) -> None:
    key = uuid.uuid4().hex
    with system.client() as api:
        first = api.post("/v1/tasks", json={"message": "once"}, headers={"Idempotency-Key": key})
        again = api.post("/v1/tasks", json={"message": "once"}, headers={"Idempotency-Key": key})
        other = api.post("/v1/tasks", json={"message": "twice"}, headers={"Idempotency-Key": key})
    assert first.status_code == again.status_code == 202
    assert first.json()["task_id"] == again.json()["task_id"]
    assert other.status_code == 409


def test_health_endpoints(system: System) -> None:
    assert httpx.get(f"{system.url}/healthz").json() == {"status": "ok", "checks": {}}
    ready = httpx.get(f"{system.url}/readyz").json()
    checks = {"redis": "ok", "sql": "ok", "broker": "ok", "v1": "ok"}
    assert ready == {"status": "ok", "checks": checks}


def test_metrics_count_submissions_and_show_queues(system: System) -> None:
    with system.client() as api:
        submit(api, "counted", priority=9)
    body = httpx.get(f"{system.url}/metrics", headers=METRICS_AUTH).text
    assert 'openclaw_tasks_submitted_total{queue="priority"}' in body
    assert 'openclaw_queue_depth{queue="long"}' in body
    assert "openclaw_v1_breaker_open 0.0" in body
    assert "counted" not in body
