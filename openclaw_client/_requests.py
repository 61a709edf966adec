"""What the sync and async clients share: request bodies, paths, answer parsing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from openclaw_client.errors import error_from_response

Model = TypeVar("Model", bound=BaseModel)
Messages = Sequence[Mapping[str, str]]
CONTROL_ACTIONS = ("cancel", "pause", "resume", "retry")


def task_path(task_id: str, suffix: str = "") -> str:
    return f"/v1/tasks/{quote(task_id, safe='')}{suffix}"


def submit_request(
    message: str | None,
    messages: Messages | None,
    *,
    agent_id: str | None,
    session_id: str | None,
    priority: int | None,
    estimated_seconds: float | None,
    timeout_seconds: int | None,
    metadata: Mapping[str, Any] | None,
    idempotency_key: str | None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The JSON body and headers of `POST /v1/tasks`; unset fields are left to the gateway."""
    if (message is None) == (messages is None):
        raise TypeError("give exactly one of `message` or `messages`")
    body: dict[str, Any] = (
        {"message": message}
        if message is not None
        else {"messages": [dict(m) for m in messages or ()]}
    )
    optional = {
        "agent_id": agent_id,
        "session_id": session_id,
        "priority": priority,
        "estimated_seconds": float(estimated_seconds) if estimated_seconds is not None else None,
        "timeout_seconds": timeout_seconds,
        "metadata": dict(metadata) if metadata is not None else None,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return body, headers


def list_params(
    session_id: str | None, state: str | None, limit: int | None, cursor: str | None
) -> dict[str, str | int]:
    given = {"session_id": session_id, "state": state, "limit": limit, "cursor": cursor}
    return {name: value for name, value in given.items() if value is not None}


def check_action(action: str) -> None:
    if action not in CONTROL_ACTIONS:
        raise ValueError(f"unknown action {action!r}; one of {', '.join(CONTROL_ACTIONS)}")


def parse(response: httpx.Response, model: type[Model]) -> Model:
    """The answer as `model`, or the error it carries (the body must have been read)."""
    if response.status_code >= 400:
        raise error_from_response(response)
    return model.model_validate_json(response.content)
