"""What a submit asks besides its message: when it may run (`run_at` / `delay_seconds`)
and what happens when its conversation is busy (`if_busy`).

The busy check itself runs inside the create script (`taskrecord/lua/create.lua`), in the
same step as the create, so two submits to one conversation cannot both see it idle; the
tasks a new one interrupts or replaces are marked there and cancelled here, through
`TaskControl.cancel` like any other cancel.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import anyio

from app.context import GatewayContext
from app.errors import ApiError
from app.schemas import TaskCreate
from app.submit_fields import RUN_AT_PAST_TOLERANCE
from taskrecord.settings import Settings

log = logging.getLogger(__name__)


def due_at(body: TaskCreate, settings: Settings, now: float) -> float:
    """When a scheduled task is due (unix s), or 0.0 to queue it at once."""
    limit = settings.absolute_time_limit
    if body.delay_seconds is not None:
        if body.delay_seconds > limit:
            _refuse("delay_seconds", f"is more than {limit} s (ABSOLUTE_TIME_LIMIT)")
        return now + body.delay_seconds if body.delay_seconds > 0 else 0.0
    if body.run_at is None:
        return 0.0
    if body.run_at < now - RUN_AT_PAST_TOLERANCE:
        _refuse("run_at", f"is {now - body.run_at:.0f} s in the past")
    if body.run_at - now > limit:
        _refuse("run_at", f"is more than {limit} s ahead (ABSOLUTE_TIME_LIMIT)")
    return body.run_at if body.run_at > now else 0.0


def _refuse(field: str, problem: str) -> NoReturn:
    raise ApiError(422, "invalid_request", f"{field}: {problem}",
                   details=[{"field": field, "problem": problem}])  # fmt: skip


def busy_refusal(task_id: str) -> ApiError:
    message = f"this conversation already has a live task ({task_id}); if_busy=reject"
    return ApiError(409, "conversation_busy", message, task_id=task_id)


async def cancel_displaced(
    ctx: GatewayContext, new_task: str, policy: str | None, task_ids: list[str]
) -> None:
    """Cancel the tasks the new one interrupts or replaces (create.lua marked them: even if
    this gateway dies now they end, as a claim or a lease renewal sees the mark)."""
    verb = "interrupted" if policy == "interrupt" else "replaced"
    reason = f"{verb} by task {new_task}"
    # Newest first: the one in progress (oldest) goes last, so that its end does not wake
    # the others before they are cancelled here (with the reason naming the new task).
    for task_id in reversed(task_ids):
        try:
            outcome = await anyio.to_thread.run_sync(ctx.control.cancel, task_id, reason)
        except Exception as exc:  # the new task is accepted: its 202 stands
            log.warning("task %s: cancel for task %s failed (%s); its mark ends it later",
                        task_id, new_task, type(exc).__name__)  # fmt: skip
            continue
        log.info("task %s %s by task %s: %s", task_id, verb, new_task, outcome.state)
