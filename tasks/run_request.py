"""Celery's worker-side request for the run task, which also tells the task its message's
delivery tag: claim.lua removes the message's kombu `unacked` record in the same call, and
the ack then skips its own Redis round trip (taskrecord.settled_messages)."""

from __future__ import annotations

from typing import Any

from celery.worker.request import Request


class RunRequest(Request):  # type: ignore[misc]
    def __init__(self, message: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(message, *args, **kwargs)
        # The request dict becomes the task's `self.request` (its keys its attributes).
        self._request_dict["delivery_tag"] = message.delivery_tag or ""
