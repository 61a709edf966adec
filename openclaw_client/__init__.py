"""OpenClaw V2 Python SDK: submit tasks, read them, steer them, follow them live.

It talks HTTP only (httpx), so it installs without the gateway's own code:

    from openclaw_client import OpenClaw

    with OpenClaw() as oc:  # OPENCLAW_URL, OPENCLAW_API_KEY
        task = oc.submit("hello", session_id="conv-42")
        for event in oc.follow(task.task_id):
            print(event.delta, end="", flush=True)
        print(oc.get(task.task_id).state)

`AsyncOpenClaw` offers the same calls for asyncio / anyio code.
"""

from openclaw_client.async_client import AsyncOpenClaw
from openclaw_client.config import ClientConfig, FollowPolicy
from openclaw_client.errors import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
    OpenClawError,
    RateLimitError,
    ServerError,
    ServerUnavailable,
    ValidationError,
    WaitTimeout,
)
from openclaw_client.models import TERMINAL_STATES, Event, Task, TaskError, TaskPage, TaskResult
from openclaw_client.sync_client import OpenClaw

__all__ = [
    "TERMINAL_STATES",
    "APIError",
    "AsyncOpenClaw",
    "AuthenticationError",
    "ClientConfig",
    "ConfigurationError",
    "ConflictError",
    "Event",
    "FollowPolicy",
    "NotFoundError",
    "OpenClaw",
    "OpenClawError",
    "RateLimitError",
    "ServerError",
    "ServerUnavailable",
    "Task",
    "TaskError",
    "TaskPage",
    "TaskResult",
    "ValidationError",
    "WaitTimeout",
]
