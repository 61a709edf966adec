"""The gateway does what its OpenAPI document says, and the document says what the request
guard, the validators and the settings do.

The main test runs schemathesis (its CLI, configured by tests/schemathesis.toml, hooks in
tests/openapi_hooks.py) against the suite's running gateway: every operation, every phase,
an API key for the task routes and an operator key for /v1/admin. It must find no server
error, no undocumented status, no schema-valid request refused and no wrong `Allow`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.schemas import NOT_BLANK
from taskrecord.settings import Settings
from tests.harness import ADMIN_KEY, API_KEY, ROOT, System, submit, wait_terminal

CONFIG = ROOT / "tests" / "schemathesis.toml"
RUN_TIMEOUT = 240  # about 40 s alone; the rest is room for a loaded machine
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def document(system: System) -> dict[str, Any]:
    response = httpx.get(f"{system.url}/openapi.json", timeout=30)
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


@pytest.fixture
def queues_resumed(system: System) -> Iterator[None]:
    """The run pauses a queue now and then (the `priority` one, see the hooks): resume
    whatever it left paused, so the suite's later tests keep their workers."""
    yield
    with system.client(ADMIN_KEY) as admin:
        paused = [
            q for q, s in admin.get("/v1/admin/queues").json()["queues"].items() if s["paused"]
        ]
        for queue in paused:
            assert admin.post(f"/v1/admin/queues/{queue}/resume").status_code == 200


SEED = "20261128"
AGENTS = "main,coder"  # the simulator's


@pytest.fixture(scope="module")
def knows_agents(system: System) -> Iterator[System]:
    """One more gateway on the suite's system (its Valkey database, SQLite file and
    workers), deployed with V1_AGENTS: the document then names the agents a request may
    name, and another one is refused at once (422 `unknown_agent`) instead of reaching V1
    (400 from a chat completion, as V1 answers). The shared gateway has no V1_AGENTS:
    tests/test_v1_failures.py sends V1 an agent it does not know."""
    replica = System(
        redis_base=system.redis_base,
        db=system.db,
        v1_url=system.v1_url,
        workdir=system.workdir,
        overrides={**system.overrides, "V1_AGENTS": AGENTS},
        host=system.host,
        prefix=system.prefix,
    )
    replica.start_gateway()
    try:
        yield replica
    finally:
        replica.stop()


@pytest.mark.timeout(RUN_TIMEOUT + 60)
def test_every_operation_answers_as_its_openapi_document_says(
    knows_agents: System, queues_resumed: None
) -> None:
    env = {
        **os.environ,
        "OPENCLAW_API_KEY": API_KEY,
        "OPENCLAW_ADMIN_KEY": ADMIN_KEY,
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(CONFIG)]
    # A fixed seed keeps the run reproducible: a failure here is a finding, not noise.
    command += ["--no-color", "run", f"{knows_agents.url}/openapi.json", "--seed", SEED]
    done = subprocess.run(
        command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    report = done.stdout + done.stderr
    found = [report.find(f"= {part} =") for part in ("ERRORS", "FAILURES", "SUMMARY")]
    assert done.returncode == 0, report[min((i for i in found if i >= 0), default=0) :][-12_000:]
    selected = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", report)
    assert selected, report[-3000:]
    # Every operation was selected and tested, the OpenAI-compatible ones too.
    assert selected[1] == selected[2] == selected[3], selected[0]
    assert int(selected[1]) >= 28, selected[0]


def test_every_v1_operation_documents_the_guards_answers_and_a_key(
    document: dict[str, Any],
) -> None:
    """The request guard answers 401 (no or unknown key) and 413 (body too big) before any
    route runs: the document names both, with the envelope, and which key to send."""
    ops = list(_operations(document))
    assert len(ops) >= 14
    for path, method, op in ops:
        responses = op["responses"]
        if path == "/metrics":  # its own token (METRICS_TOKEN), not the API keys
            assert "401" in responses, (method, path)
            continue
        if not path.startswith("/v1/"):
            assert "401" not in responses, (method, path)
            continue
        assert _schema_ref(responses["401"]) == "ErrorBody", (method, path)
        assert "WWW-Authenticate" in responses["401"]["headers"], (method, path)
        scheme = "operatorKey" if path.startswith("/v1/admin/") else "apiKey"
        assert op["security"] == [{scheme: []}], (method, path)
        if method == "post":
            assert _schema_ref(responses["413"]) == "ErrorBody", (method, path)
    schemes = document["components"]["securitySchemes"]
    assert {schemes[n]["scheme"] for n in ("apiKey", "operatorKey")} == {"bearer"}


def test_every_error_status_is_documented_with_the_error_envelope(
    document: dict[str, Any],
) -> None:
    for path, method, op in _operations(document):
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")) and path != "/readyz":
                assert _schema_ref(response) == "ErrorBody", (method, path, status)
    assert "HTTPValidationError" not in document["components"]["schemas"]
    submit_errors = document["paths"]["/v1/tasks"]["post"]["responses"]
    assert {"400", "401", "409", "413", "422", "429", "503"} <= set(submit_errors)
    for status in ("429", "503"):
        assert "Retry-After" in submit_errors[status]["headers"]
    for steer in ("cancel", "pause", "resume", "retry"):
        steering = document["paths"][f"/v1/tasks/{{task_id}}/{steer}"]["post"]
        assert {"404", "409"} <= set(steering["responses"]), steer
    events = document["paths"]["/v1/tasks/{task_id}/events"]["get"]["responses"]
    assert "text/event-stream" in events["200"]["content"]


def test_submit_limits_in_the_document_follow_the_settings() -> None:
    settings = Settings(
        api_keys="k1:alpha,k2:beta",
        priority_tenants="",
        tenant_max_priority=6,
        max_messages=7,
        max_message_chars=123,
        v1_agents="main,coder",
    )
    schemas = create_app(settings).openapi()["components"]["schemas"]
    body = schemas["TaskCreate"]["properties"]
    assert _branch(body["message"], "string")["maxLength"] == 123
    assert _branch(body["messages"], "array")["maxItems"] == 7
    assert schemas["ChatMessage"]["properties"]["content"]["maxLength"] == 123
    assert body["priority"]["maximum"] == 6
    assert _branch(body["agent_id"], "string")["enum"] == ["coder", "main"]
    assert [set(form["required"]) for form in schemas["TaskCreate"]["oneOf"]] == [
        {"message"},
        {"messages"},
    ]
    with_priority_tenant = Settings(api_keys="k1:alpha", priority_tenants="alpha")
    schemas = create_app(with_priority_tenant).openapi()["components"]["schemas"]
    assert schemas["TaskCreate"]["properties"]["priority"]["maximum"] == 10


def test_openai_routes_document_both_media_types_and_the_agents() -> None:
    """A streamed answer is SSE, the rest JSON; with V1_AGENTS the document names the
    models and agent ids (others: 422), without it an agent V1 refuses is a chat's 400."""
    doc = _document(v1_agents="main,x.y")
    paths = doc["paths"]
    for path in ("/v1/chat/completions", "/v1/responses", "/v1/responses/{response_id}"):
        op = next(iter(paths[path].values()))
        assert set(op["responses"]["200"]["content"]) == {"application/json", "text/event-stream"}
    chat = paths["/v1/chat/completions"]["post"]
    assert {"400", "409", "422", "429", "502", "503", "504"} <= set(chat["responses"])
    header = next(p for p in chat["parameters"] if p["name"] == "x-openclaw-agent-id")
    pattern = re.compile(header["schema"]["pattern"])
    assert [a for a in ("main", "x.y", "xzy", "mainx", "coder") if pattern.search(a)] == [
        "main",
        "x.y",
    ]
    request = doc["components"]["schemas"]["ResponseCreate"]["properties"]
    assert request["model"]["enum"] == ["openclaw", "openclaw/main", "openclaw/x.y"]
    assert _branch(request["input"], "string")["maxLength"] == 321
    assert _branch(request["instructions"], "string")["pattern"] == NOT_BLANK
    open_doc = _document(v1_agents="")
    model = open_doc["components"]["schemas"]["ChatCompletionCreate"]["properties"]["model"]
    assert "enum" not in model
    refused = open_doc["paths"]["/v1/chat/completions"]["post"]["responses"]["400"]
    assert "v1_bad_request" in refused["content"]["application/json"]["examples"]


def test_not_blank_pattern_refuses_exactly_what_the_validators_strip() -> None:
    pattern = re.compile(NOT_BLANK)
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        assert (pattern.search(char) is None) == char.isspace(), hex(code)


def test_method_not_allowed_lists_every_method_of_the_path(system: System) -> None:
    """Starlette's 405 named only the first route on the path (`Allow: POST` for
    /v1/tasks, which also takes GET)."""
    with system.client() as client:
        for path, methods in (("/v1/tasks", {"GET", "POST"}), ("/healthz", {"GET"})):
            response = client.request("OPTIONS", path)
            assert response.status_code == 405
            allowed = {m.strip() for m in response.headers["allow"].split(",")}
            assert allowed - {"HEAD"} == methods, response.headers["allow"]
            assert response.json()["error"]["type"] == "method_not_allowed"


def test_requests_the_document_calls_valid_are_accepted(system: System) -> None:
    """JSON Schema's integers include 7.0; pydantic's strict int refused them."""
    with system.client() as client:
        task = submit(client, "integral floats", priority=7.0, timeout_seconds=30.0)
        assert task["priority"] == 7
        wait_terminal(client, task["task_id"])
        refused = client.post("/v1/tasks", json={"message": "x", "priority": 7.5})
        assert refused.status_code == 422, refused.text
        blank = client.post("/v1/tasks", json={"message": "\x1f\u3000"})
        assert blank.status_code == 422, blank.text


def test_event_cursor_beyond_any_seq_is_refused_not_a_broken_stream(system: System) -> None:
    with system.client() as client:
        task = submit(client, "cursor bounds")
        wait_terminal(client, task["task_id"])
        url = f"/v1/tasks/{task['task_id']}/events"
        for headers, params in (
            ({"Last-Event-ID": "20000000000000000000"}, {}),
            ({"Last-Event-ID": "-1"}, {}),
            ({}, {"after": 10**16}),
        ):
            response = client.get(url, headers=headers, params=params)
            assert response.status_code == 422, (headers, params, response.text)
            assert response.json()["error"]["type"] == "invalid_request"


def _document(v1_agents: str) -> dict[str, Any]:
    settings = Settings(api_keys="k1:alpha", max_message_chars=321, v1_agents=v1_agents)
    doc: dict[str, Any] = create_app(settings).openapi()
    return doc


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method, op


def _schema_ref(response: dict[str, Any]) -> str:
    ref: str = response["content"]["application/json"]["schema"]["$ref"]
    return ref.rsplit("/", 1)[-1]


def _branch(prop: dict[str, Any], type_: str) -> dict[str, Any]:
    found: dict[str, Any] = next(b for b in prop.get("anyOf", [prop]) if b.get("type") == type_)
    return found
