"""What the OpenAPI document says beyond what FastAPI infers from the routes.

- `app.openapi_errors.errors(...)` gives a route's `responses=`: each error status it can
  answer, with the envelope's schema, what it means there, examples, and its headers.
- `install_openapi(app, settings)` then completes the document once, with what only the
  whole app or the settings know: the request guard's 401 (every `/v1/` operation) and 413
  (every POST), answered before routing; the key schemes, so Swagger UI can send a key;
  the envelope instead of FastAPI's own 422 shape, and no 422 where nothing is validated;
  the deployment's limits (MAX_MESSAGES, MAX_MESSAGE_CHARS, the highest priority a tenant
  may use, V1_AGENTS); and the rules pydantic checks in code (exactly one of `message` or
  `messages`, a user message among `messages`, the shapes of ids, keys and cursors).

A request the document calls valid is one the gateway accepts (tests/test_openapi.py runs
schemathesis against it), except for what depends on state: another tenant's or an unknown
task (404), a conflicting state (409), a full queue (429).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from app.errors import ErrorBody
from app.openai_docs import complete_openai
from app.openapi_errors import error_response
from app.schemas import NOT_BLANK
from app.submit_fields import RUN_AT_PAST_TOLERANCE
from taskrecord.settings import Settings
from taskrecord.states import QUEUES, EventType
from taskrecord.tenants import TenantPolicies

_TASK_EVENT = {
    "type": "object",
    "required": ["type", "task_id", "seq", "ts", "data"],
    "properties": {
        "type": {"type": "string", "enum": [str(t) for t in EventType]},
        "task_id": {"type": "string"},
        "seq": {"type": "integer", "minimum": 1, "description": "Strictly increasing per task."},
        "ts": {"type": "number", "description": "Unix time."},
        "data": {"type": "object"},
    },
}
# Sent instead when the client reads too slowly; reconnect with Last-Event-ID.
_OVERFLOW = {"type": "object", "required": ["type"], "properties": {"type": {"const": "overflow"}}}


def event_stream() -> dict[str, Any]:
    """The 200 of GET /v1/tasks/{id}/events. For OpenAPI 3.1 the `schema` of an event
    stream describes one event: its SSE fields, `data` being the event as JSON."""
    event = {
        "type": "object",
        "required": ["data", "event"],
        "properties": {
            "event": {"type": "string", "enum": [*(str(t) for t in EventType), "overflow"]},
            "id": {"type": "string", "pattern": "^[0-9]+$", "description": "The seq."},
            "retry": {"type": "integer"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"anyOf": [_TASK_EVENT, _OVERFLOW]},
            },
        },
    }
    example = (
        'id: 1\nevent: queued\ndata: {"type":"queued","task_id":"6f0c...","seq":1,'
        '"ts":1700000000.0,"data":{"queue":"short","priority":5}}\n\n'
    )
    return {
        "description": "Server-Sent Events: `id:` the seq, `event:` the type, `data:` the "
        "event as JSON. Ends after the terminal event.",
        "content": {"text/event-stream": {"schema": event, "example": example}},
    }


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Have `app.openapi()` (and /openapi.json, /docs) serve the completed document."""
    infer: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(infer(), settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(doc: dict[str, Any], settings: Settings) -> dict[str, Any]:
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in ErrorBody.model_json_schema(ref_template=_REF + "{model}")["$defs"].items():
        schemas.setdefault(name, schema)
    schemas.setdefault("ErrorBody", _error_body_schema())
    doc["components"]["securitySchemes"] = SECURITY_SCHEMES
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            _complete_operation(path, method, op)
    for name in ("HTTPValidationError", "ValidationError"):
        if not _referenced(doc, _REF + name):
            schemas.pop(name, None)
    if "TaskCreate" in schemas:
        _task_create(schemas, settings)

    complete_openai(doc, settings)
    return doc


_REF = "#/components/schemas/"
SECURITY_SCHEMES = {
    "apiKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key of API_KEYS; it decides the tenant whose tasks you see.",
    },
    "operatorKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "An operator key of ADMIN_API_KEYS (for /v1/admin).",
    },
}


def _error_body_schema() -> dict[str, Any]:
    schema = ErrorBody.model_json_schema(ref_template=_REF + "{model}")
    schema.pop("$defs", None)
    return schema


def _complete_operation(path: str, method: str, op: dict[str, Any]) -> None:
    responses: dict[str, Any] = op.setdefault("responses", {})
    if path.startswith("/v1/"):
        op["security"] = [{"operatorKey": []} if path.startswith("/v1/admin") else {"apiKey": []}]
        responses.setdefault("401", _plain(error_response(401)))
    if method == "post":
        responses.setdefault("413", _plain(error_response(413)))
    _envelope_for_422(op)
    for param in op.get("parameters", []):
        _parameter(path, param)


def _plain(entry: dict[str, Any]) -> dict[str, Any]:
    """A `responses=` entry as it stands in the document (the model as a schema ref)."""
    entry = dict(entry)
    entry.pop("model")
    entry["content"]["application/json"]["schema"] = {"$ref": _REF + "ErrorBody"}
    return entry


def _envelope_for_422(op: dict[str, Any]) -> None:
    """FastAPI documents its own 422 shape on every operation with parameters; ours is the
    envelope, and only where something can fail validation."""
    found = op["responses"].get("422")
    if found is None:
        return
    params = op.get("parameters", [])
    unchecked = all(p["in"] == "path" and p["schema"].get("type") == "string" for p in params)
    fastapis_own = found.get("description") == "Validation Error"
    if fastapis_own and unchecked and "requestBody" not in op:
        del op["responses"]["422"]
        return
    content = found.setdefault("content", {}).setdefault("application/json", {})
    content["schema"] = {"$ref": _REF + "ErrorBody"}
    if fastapis_own:
        default = _plain(error_response(422))
        found["description"] = default["description"]
        content.setdefault("examples", default["content"]["application/json"]["examples"])


def _parameter(path: str, param: dict[str, Any]) -> None:
    schema = param["schema"]
    # `X | None` parameters: "null" cannot be sent in a path, query or header; absent is.
    branches = schema.get("anyOf")
    if branches and any(b.get("type") == "null" for b in branches):
        rest = [b for b in branches if b.get("type") != "null"]
        if len(rest) == 1:
            schema.pop("anyOf")
            schema.update(rest[0])
    where = (param["in"], param["name"])
    schema.update(_PARAMETER_SHAPES.get((path, *where)) or _PARAMETER_SHAPES.get(("", *where), {}))


# Shapes the route code checks by hand (a 404 or 422 otherwise), by (path or "" for any
# path, where, name).
_PARAMETER_SHAPES: dict[tuple[str, str, str], dict[str, Any]] = {
    ("", "path", "task_id"): {"format": "uuid", "description": "A task id (a UUID)."},
    ("", "path", "response_id"): {"format": "uuid", "description": "Its task's id (a UUID)."},
    ("/v1/admin/queues/{queue}/pause", "path", "queue"): {"enum": list(QUEUES)},
    ("/v1/admin/queues/{queue}/resume", "path", "queue"): {"enum": list(QUEUES)},
    ("/v1/tasks", "query", "cursor"): {
        "format": "task-cursor",
        "description": "`next_cursor` of the previous page, unchanged (another value: 422).",
    },
    ("", "header", "Idempotency-Key"): {
        "pattern": "^[\\x21-\\x7e]([\\x20-\\x7e]{0,198}[\\x21-\\x7e])?$",
        "description": "1-200 printable ASCII characters. The same key with the same body "
        "answers the first task again; with another body, 409.",
    },
    ("", "header", "Last-Event-ID"): {
        "pattern": "^[0-9]{0,15}$",
        "description": "The last `seq` you received: the stream resumes after it.",
    },
}


def _task_create(schemas: dict[str, Any], settings: Settings) -> None:
    """The submit body's limits as this deployment enforces them."""
    body = schemas["TaskCreate"]
    props = body["properties"]
    text = _branch(props["message"], "string")
    text.update(maxLength=settings.max_message_chars, pattern=NOT_BLANK)
    chat = _branch(props["messages"], "array")
    chat.update(
        minItems=1,
        maxItems=settings.max_messages,
        contains={
            "type": "object",
            "properties": {"role": {"const": "user"}},
            "required": ["role"],
        },
    )
    props["messages"]["description"] = (
        f"A whole chat to continue: at most {settings.max_messages} entries (MAX_MESSAGES; more: "
        f"413), at least one from the user, at most {settings.max_message_chars} characters "
        "together (MAX_MESSAGE_CHARS; more: 413)."
    )
    content = schemas["ChatMessage"]["properties"]["content"]
    content["maxLength"] = settings.max_message_chars
    top = highest_priority(settings)
    props["priority"]["maximum"] = top
    props["priority"]["description"] = (
        f"0-{top}: at most your tenant's maximum (more: 422 `priority_not_allowed`); above "
        f"{settings.priority_threshold} (PRIORITY_THRESHOLD) the task goes to the priority queue."
    )
    if "delay_seconds" in props:  # when they may be due: within the absolute limit
        limit = settings.absolute_time_limit
        _branch(props["delay_seconds"], "number")["maximum"] = limit
        props["run_at"]["description"] = (
            "Run no earlier than this: ISO 8601 with a time zone, or unix seconds; at most "
            f"{limit} s ahead (ABSOLUTE_TIME_LIMIT) and at most {RUN_AT_PAST_TOLERANCE:g} s in "
            "the past (else 422). The task waits `queued`, with `scheduled_for`."
        )
    if settings.v1_agents and "agent_id" in props:
        _branch(props["agent_id"], "string")["enum"] = sorted(settings.v1_agents)
    # Exactly one of the two forms (null counts as absent).
    body["oneOf"] = [
        {"required": ["message"], "properties": {"message": {"type": "string"}}},
        {"required": ["messages"], "properties": {"messages": {"type": "array"}}},
    ]


def highest_priority(settings: Settings) -> int:
    """The highest priority any tenant with an API key may use."""
    policies = TenantPolicies(settings)
    return max((policies(t).max_priority for t in set(settings.api_keys.values())), default=0)


def _branch(prop: dict[str, Any], type_: str) -> dict[str, Any]:
    """The `type_` branch of an `X | None` property (or the property itself)."""
    for branch in prop.get("anyOf", [prop]):
        if branch.get("type") == type_:
            found: dict[str, Any] = branch
            return found
    raise KeyError(type_)


def _referenced(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_referenced(v, ref) for v in node.values())
    if isinstance(node, list):
        return any(_referenced(v, ref) for v in node)
    return False
