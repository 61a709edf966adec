"""schemathesis hooks of tests/test_openapi.py (loaded through `hooks` in
tests/schemathesis.toml).

The list cursor is an opaque token the API hands out (`next_cursor`): no JSON Schema can
say which strings decode, so the document names its format (`task-cursor`) and this module
tells schemathesis how a well-formed one looks: base64url of "<unix time>|<task id>",
what `taskrecord.store.repo.encode_cursor` writes.

Pausing a queue stops its workers for everyone: the run pauses only one queue (below).
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import schemathesis
from hypothesis import strategies as st

from taskrecord.states import QUEUES


def _cursor(stamp: float, task_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{stamp:.6f}|{task_id}".encode()).decode()


schemathesis.openapi.format(
    "task-cursor",
    st.builds(_cursor, st.floats(min_value=0, max_value=4_000_000_000), st.uuids()),
)


WELL_FORMED_URL = re.compile(r"[hH][tT][tT][pP][sS]?://[!-~]+")
# Schedules: a cron expression and an IANA zone are formats no JSON Schema can check.
schemathesis.openapi.format("cron", st.sampled_from(["0 0 1 1 *", "@yearly", "0 9 1 * mon"]))
schemathesis.openapi.format(
    "iana-time-zone", st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata"])
)

PAUSE_QUEUE = "/v1/admin/queues/{queue}/pause"
# The one queue the run may pause: tasks it submits (default priority 5) and the OpenAI
# routes, which wait for their task, use the others. The test resumes it at the end.
PAUSABLE = "priority"


@schemathesis.hook
def before_call(
    context: schemathesis.HookContext, case: schemathesis.Case, kwargs: dict[str, Any]
) -> None:
    """Every phase calls through here (the `map_*` hooks miss examples and coverage)."""
    if case.operation.path == PAUSE_QUEUE and case.path_parameters.get("queue") in QUEUES:
        case.path_parameters["queue"] = PAUSABLE
    # A webhook URL must resolve to a public address, which no JSON Schema can say (random
    # hosts do not resolve: 422). A well-formed one becomes "" (no webhook): the URL policy
    # is tested in tests/test_webhooks.py and tests/unit/test_webhook_policy.py.
    body = case.body if isinstance(case.body, dict) else {}
    for holder in (body, body.get("task")):  # a task, or a schedule's task
        url = holder.get("webhook_url") if isinstance(holder, dict) else None
        if isinstance(holder, dict) and isinstance(url, str) and WELL_FORMED_URL.fullmatch(url):
            holder["webhook_url"] = ""
    _run_at_in_window(body)


def _run_at_in_window(body: dict[str, Any]) -> None:
    """`run_at` must fall between now and ABSOLUTE_TIME_LIMIT ahead, a window no schema can
    state: a well-formed one (date-time or number) is moved into it; others stay as sent."""
    value = body.get("run_at")
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int | float):
        body["run_at"] = time.time() + 60
    elif isinstance(value, str):
        try:
            datetime.fromisoformat(value.upper())
        except ValueError:
            return
        body["run_at"] = datetime.fromtimestamp(time.time() + 60, UTC).isoformat()
