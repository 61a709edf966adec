"""What the OpenAPI document says about the OpenAI-compatible routes (`app.api.openai_*`).

Their answers are built as plain dicts (`app.openai_shapes`), so the schemas of their 200s
are stated here, with both media types a route can answer: JSON, or Server-Sent Events with
`stream: true`. Their error statuses are the gateway's envelope like every other route's;
a chat completion's failure after its task ran keeps V1's shape `{"error": {"message",
"type", "param", "code"}}`, which is that envelope with two more members.

`complete_openai(doc, settings)` adds what the deployment decides: with V1_AGENTS set, the
models and agent ids a request may name (another one is 422 `unknown_agent`, before any
task exists); without it any well-formed id is sent to V1, which refuses one it does not
know (400, as V1 itself answers).
"""

from __future__ import annotations

from typing import Any

from app.openapi_errors import IDEMPOTENCY_CONFLICT, Responses, errors
from app.schemas import NOT_BLANK
from taskrecord.settings import Settings

_NULLABLE_INT = {"type": ["integer", "null"]}
_USAGE = {
    "type": ["object", "null"],
    "description": "V1's token counts; null when V1 gave none.",
    "properties": {
        "prompt_tokens": _NULLABLE_INT,
        "completion_tokens": _NULLABLE_INT,
        "total_tokens": _NULLABLE_INT,
    },
}
CHAT_COMPLETION = {
    "type": "object",
    "required": ["id", "object", "created", "model", "choices"],
    "properties": {
        "id": {"type": "string", "description": "`chatcmpl_<task id>`."},
        "object": {"const": "chat.completion"},
        "created": {"type": "integer"},
        "model": {"type": "string", "description": "The request's model, echoed (as V1 does)."},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["index", "message", "finish_reason"],
                "properties": {
                    "index": {"type": "integer"},
                    "message": {
                        "type": "object",
                        "required": ["role", "content"],
                        "properties": {
                            "role": {"const": "assistant"},
                            "content": {"type": "string"},
                        },
                    },
                    "finish_reason": {"type": "string"},
                },
            },
        },
        "usage": _USAGE,
    },
}
_CHUNK = {
    "type": "object",
    "description": 'A `chat.completion.chunk`; after a failure, `{"error": {...}}` instead.',
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "chat.completion.chunk"},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {"type": "array"},
        "usage": _USAGE,
        "error": {"type": "object"},
    },
}
_MESSAGE_ITEM = {
    "type": "object",
    "required": ["id", "type", "status", "role", "content"],
    "properties": {
        "id": {"type": "string"},
        "type": {"const": "message"},
        "status": {"enum": ["in_progress", "completed", "incomplete"]},
        "role": {"const": "assistant"},
        "content": {"type": "array", "items": {"type": "object"}},
    },
}
RESPONSE_OBJECT = {
    "type": "object",
    "description": "A Response; its `id` is the task's id (also `/v1/tasks/{id}`).",
    "required": ["id", "object", "created_at", "status", "model", "output", "output_text"],
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "object": {"const": "response"},
        "created_at": {"type": "integer"},
        "status": {
            "enum": ["queued", "in_progress", "completed", "failed", "cancelled", "incomplete"]
        },
        "background": {"type": "boolean"},
        "model": {"type": "string", "description": "`openclaw/<agent that runs it>`."},
        "output": {"type": "array", "items": _MESSAGE_ITEM},
        "output_text": {"type": "string"},
        "usage": {"type": ["object", "null"]},
        "error": {
            "type": ["object", "null"],
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        },
        "incomplete_details": {"type": ["object", "null"]},
        "metadata": {"type": "object"},
    },
}
_RESPONSE_EVENT = {
    "type": "object",
    "required": ["type", "sequence_number"],
    "properties": {
        "type": {"type": "string", "pattern": "^response\\."},
        "sequence_number": {
            "type": "integer",
            "description": "Strictly increasing; resume with `starting_after` set to it.",
        },
    },
}
MODEL_LIST = {
    "type": "object",
    "required": ["object", "data"],
    "properties": {
        "object": {"const": "list"},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "object", "created", "owned_by"],
                "properties": {
                    "id": {"type": "string", "pattern": "^openclaw(/.+)?$"},
                    "object": {"const": "model"},
                    "created": {"type": "integer"},
                    "owned_by": {"type": "string"},
                },
            },
        },
    },
}


def _sse(schema: dict[str, Any], example: str, ends: str, last: str = "") -> dict[str, Any]:
    """An event stream's media type: for OpenAPI 3.1 its `schema` describes one event
    (`data` is JSON, or the `last` marker)."""
    data: dict[str, Any] = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": schema,
    }
    if last:
        data = {"anyOf": [{"const": last}, data]}
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {"event": {"type": "string"}, "data": data},
    }
    return {"schema": event, "example": example, "description": ends}


TASK_HEADER = "x-openclaw-task-id"
TASK_ID_HEADER = {
    TASK_HEADER: {
        "description": "The task that runs this request (`/v1/tasks/{id}`).",
        "schema": {"type": "string", "format": "uuid"},
    }
}
_CHAT_SSE = _sse(
    _CHUNK,
    'data: {"id":"chatcmpl_6f0c...","object":"chat.completion.chunk","created":1700000000,'
    '"model":"openclaw","choices":[{"index":0,"delta":{"role":"assistant"},'
    '"finish_reason":null}]}\n\ndata: [DONE]\n\n',
    "Ends with `data: [DONE]`.",
    "[DONE]",
)
_RESPONSE_SSE = _sse(
    _RESPONSE_EVENT,
    'event: response.created\ndata: {"type":"response.created","response":{...},'
    '"sequence_number":10}\n\n',
    "Ends after `response.completed`, `response.failed`, `response.cancelled` or "
    "`response.incomplete`.",
)


def _ok(description: str, schema: dict[str, Any], sse: dict[str, Any] | None) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": schema}}
    if sse is not None:
        content["text/event-stream"] = sse
    return {"description": description, "content": content}


_V1_REFUSED = {
    "malformed_json": "the request body is not valid JSON",
    "v1_bad_request": "invalid_request_error: Unknown agent 'ghost'.",
}
_AGENT_REFUSED = {
    "invalid_request": "messages.0.content: is empty",
    "unknown_agent": "unknown agent 'ghost'; known: main, coder",
}

CHAT_RESPONSES: Responses = {
    200: {
        **_ok(
            "The completion (JSON), or with `stream: true` its chunks (SSE; a failure after "
            "the stream began is an error chunk inside this 200, as with V1).",
            CHAT_COMPLETION,
            _CHAT_SSE,
        ),
        "headers": TASK_ID_HEADER,
    },
    **errors(
        (400, "The body is not valid JSON; or V1 refused the request once its task ran "
         "(an agent V1 does not know, when V1_AGENTS is empty).", _V1_REFUSED),
        (409, "This Idempotency-Key was used for a different request; or the task was "
         "cancelled while the call waited.",
         {**IDEMPOTENCY_CONFLICT[2], "cancelled": "the task ended cancelled"}),
        (422, "A field is invalid (`details` names each), or the model or "
         "`x-openclaw-agent-id` names an agent not in V1_AGENTS (`unknown_agent`).",
         _AGENT_REFUSED),
        429,
        503,
        (502, "The task failed (V1 was unreachable, refused the key or broke down); "
         "`type` says how."),
        (504, "The task ran out of time (its time limit, or V1 timed out)."),
    ),
}  # fmt: skip

RESPONSE_CREATE_RESPONSES: Responses = {
    200: {
        **_ok(
            "The Response: at once with `background: true` (`queued`), else when its task "
            "has ended; with `stream: true` its events (SSE) instead.",
            RESPONSE_OBJECT,
            _RESPONSE_SSE,
        ),
        "headers": TASK_ID_HEADER,
    },
    **errors(
        (400, "The body is not valid JSON."),
        IDEMPOTENCY_CONFLICT,
        (422, "A field is invalid (`details` names each), or the model or "
         "`x-openclaw-agent-id` names an agent not in V1_AGENTS (`unknown_agent`).",
         _AGENT_REFUSED),
        429,
        503,
    ),
}  # fmt: skip

RESPONSE_GET_RESPONSES: Responses = {
    200: _ok(
        "The Response as it is now; with `stream=true` its events numbered above "
        "`starting_after` (SSE), until the task ends.",
        RESPONSE_OBJECT,
        _RESPONSE_SSE,
    ),
    **errors(404),
}

RESPONSE_CANCEL_RESPONSES: Responses = {
    200: _ok(
        "The Response, `cancelled` (or already ended when the cancel arrived while "
        "its last answer was being written).",
        RESPONSE_OBJECT,
        None,
    ),
    **errors(404, (409, "The task has already ended.")),
}

MODELS_RESPONSES: Responses = {200: _ok("The models a request may name.", MODEL_LIST, None)}

# Follow a created Response to its other operations (schemathesis' stateful phase too).
# The id is read from the header: a streamed answer has no JSON body to read it from.
_CREATED_ID = f"$response.header.{TASK_HEADER}"
RESPONSE_LINKS = {
    "GetResponse": {
        "operationId": "get_response_v1_responses__response_id__get",
        "parameters": {"response_id": _CREATED_ID},
    },
    "CancelResponse": {
        "operationId": "cancel_response_v1_responses__response_id__cancel_post",
        "parameters": {"response_id": _CREATED_ID},
    },
}

OPENAI_REQUESTS = ("ChatCompletionCreate", "ResponseCreate")
AGENT_HEADER = "x-openclaw-agent-id"


def complete_openai(doc: dict[str, Any], settings: Settings) -> None:
    """The deployment's agents and text limit in the OpenAI request shapes."""
    schemas = doc.get("components", {}).get("schemas", {})
    for name in (*OPENAI_REQUESTS, "ChatInMessage", "InputMessage"):
        if name in schemas:
            _limit_text(schemas[name], settings.max_message_chars)
    created = doc.get("paths", {}).get("/v1/responses", {}).get("post")
    if created is not None:
        created["responses"]["200"]["links"] = RESPONSE_LINKS
    agents = sorted(settings.v1_agents)
    if not agents:
        return
    models = ["openclaw", *(f"openclaw/{agent}" for agent in agents)]
    for name in OPENAI_REQUESTS:
        if name in schemas:
            schemas[name]["properties"]["model"]["enum"] = models
    for item in doc.get("paths", {}).values():
        for op in item.values():
            for param in op.get("parameters", []) if isinstance(op, dict) else []:
                if param.get("in") == "header" and param.get("name") == AGENT_HEADER:
                    param["schema"]["pattern"] = one_of(agents)
                    param["description"] = "The agent (wins over the model's): one of V1_AGENTS."


def one_of(words: list[str]) -> str:
    """A pattern matching exactly these agent ids. Not an `enum`: schemathesis' coverage
    phase pairs a header's enum values with a body that is not an object."""
    return "^(?:" + "|".join(w.replace(".", "\\.") for w in words) + ")$"


def _limit_text(node: Any, limit: int) -> None:
    """Every non-blank text (a message, a part, `input`, `instructions`) is at most
    MAX_MESSAGE_CHARS characters (more: 413; all of them together too)."""
    if isinstance(node, dict):
        if node.get("type") == "string" and node.get("pattern") == NOT_BLANK:
            node["maxLength"] = limit
        for value in node.values():
            _limit_text(value, limit)
    elif isinstance(node, list):
        for value in node:
            _limit_text(value, limit)
