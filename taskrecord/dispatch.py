"""Message ids, and Celery's own publish of the run message: the reference that the
messages we render (`taskrecord.message`, and `run_message` in `taskrecord/lua/prelude.lua`)
are checked against in tests/test_message.py."""

from __future__ import annotations

from celery import Celery

from taskrecord.broker import RUN_TASK


def message_id(task_id: str, dispatch: int) -> str:
    """First dispatch uses the task id itself, so `celery control revoke <task id>` works;
    later ones get a suffix, so a revoke remembered by workers cannot eat a manual retry."""
    return task_id if dispatch <= 1 else f"{task_id}.{dispatch}"


def task_id_of(message: str) -> str:
    return message.partition(".")[0]


def dispatch(
    celery: Celery, task_id: str, queue: str, dispatch_no: int, countdown: float | None = None
) -> None:
    celery.send_task(
        RUN_TASK,
        args=[task_id, str(dispatch_no)],
        task_id=message_id(task_id, dispatch_no),
        queue=queue,
        countdown=countdown if countdown else None,
        ignore_result=True,
    )
