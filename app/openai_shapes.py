"""OpenAI's shapes of a task: the Response object, chat completions and their chunks.

A response's id is its task's id, so one id works at /v1/responses, /v1/tasks and in the
task's events. The Response object is built the same way from a task record (GET) and from
the task's terminal event (the stream), so both tell the same story.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.schemas import TaskOut
from taskrecord.states import TaskState

# V2 state -> Response status ("incomplete" is OpenAI's word for a run cut short).
STATUS: dict[str, str] = {
    TaskState.QUEUED: "queued",
    TaskState.PAUSED: "queued",
    TaskState.RUNNING: "in_progress",
    TaskState.SUCCEEDED: "completed",
    TaskState.FAILED: "failed",
    TaskState.CANCELLED: "cancelled",
    TaskState.TIMED_OUT: "incomplete",
}
ITEM_STATUS = {"completed": "completed", "in_progress": "in_progress"}  # else "incomplete"


@dataclass(frozen=True)
class ResponseBase:
    """The fields of a Response that do not change while its task runs."""

    id: str
    created_at: int
    model: str
    metadata: dict[str, Any]
    background: bool

    @classmethod
    def of(cls, task: TaskOut, background: bool = True) -> ResponseBase:
        return cls(
            id=task.task_id,
            created_at=int(task.created_at.timestamp()),
            model=f"openclaw/{task.agent_id}",
            metadata=dict(task.metadata or {}),
            background=background,
        )

    @property
    def item_id(self) -> str:
        return "msg_" + self.id.replace("-", "")


def response_usage(usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """V1's chat usage (prompt / completion tokens) in the Responses API's names."""
    if not usage:
        return None
    given = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    inp, out = (int(n) if isinstance(n, int | float) else 0 for n in given)
    total = usage.get("total_tokens")
    return {
        "input_tokens": inp,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": out,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": int(total) if isinstance(total, int | float) else inp + out,
    }


def text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(base: ResponseBase, status: str, text: str | None) -> dict[str, Any]:
    """The assistant message; `text` None while it has no content part yet."""
    return {
        "id": base.item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [] if text is None else [text_part(text)],
    }


def response_object(
    base: ResponseBase,
    status: str,
    text: str | None = None,
    usage: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Response. `text` None: no output item yet (queued, or running before output)."""
    output = []
    if text is not None:
        output.append(message_item(base, ITEM_STATUS.get(status, "incomplete"), text))
    failure = None
    if status == "failed":
        failure = {"code": str((error or {}).get("type", "server_error")),
                   "message": str((error or {}).get("message", "the task failed"))}  # fmt: skip
    return {
        "id": base.id,
        "object": "response",
        "created_at": base.created_at,
        "status": status,
        "background": base.background,
        "model": base.model,
        "output": output,
        "output_text": text or "",
        "usage": response_usage(usage) if status == "completed" else None,
        "error": failure,
        "incomplete_details": {"reason": "timed_out"} if status == "incomplete" else None,
        "metadata": base.metadata,
        "instructions": None,
        "parallel_tool_calls": False,
        "tool_choice": "auto",
        "tools": [],
        "temperature": None,
        "top_p": None,
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "store": True,
    }


def response_from_task(task: TaskOut, background: bool = True) -> dict[str, Any]:
    status = STATUS[task.state]
    base = ResponseBase.of(task, background)
    if task.state == TaskState.SUCCEEDED and task.result is not None:
        return response_object(base, status, task.result.content, task.result.usage)
    error = task.error.model_dump() if task.error is not None else None
    return response_object(base, status, task.partial or None, error=error)


# --- Chat Completions -------------------------------------------------------------------


def chat_id(task_id: str) -> str:
    """Like V1's `chatcmpl_<uuid>`, with the task's id as the uuid."""
    return f"chatcmpl_{task_id}"


def chat_completion(task: TaskOut, model: str) -> dict[str, Any]:
    result = task.result
    assert result is not None
    return {
        "id": chat_id(task.task_id),
        "object": "chat.completion",
        "created": int(task.created_at.timestamp()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.content},
                "finish_reason": result.finish_reason or "stop",
            }
        ],
        "usage": result.usage,
    }


def chat_chunk(
    task_id: str,
    created: int,
    model: str,
    delta: dict[str, Any] | None = None,
    finish_reason: str | None = None,
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One `chat.completion.chunk`; with `usage`, the choice-less usage chunk."""
    chunk: dict[str, Any] = {
        "id": chat_id(task_id),
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
    }
    if usage is not None:
        chunk["usage"] = usage
    else:
        chunk["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish_reason}]
    return chunk


# A task that ended without an answer, as the HTTP status a direct V1 call would have given.
FAILURE_STATUS = {"v1_bad_request": 400, "v1_timeout": 504}


def chat_failure(state: str, error: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
    """(HTTP status, the `error` member) for a task that ended `failed`, `cancelled` or
    `timed_out`: V1's 400-class refusals keep their status, the rest are the gateway's 502 /
    504 / 409 (the client's request was fine; the run was not)."""
    kind = str((error or {}).get("type", state))
    message = str((error or {}).get("message", f"the task ended {state}"))
    if state == TaskState.TIMED_OUT:
        status = 504
    elif state == TaskState.CANCELLED:
        status = 409
    elif kind == "v1_bad_request" and isinstance((error or {}).get("status"), int):
        status = int((error or {})["status"])
    else:
        status = FAILURE_STATUS.get(kind, 502)
    return status, {"message": message, "type": kind, "param": None, "code": state}
