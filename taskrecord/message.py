"""The Celery message for `openclaw.run`, built without Celery's producer.

The gateway writes a task's live record and its queue message in one Redis script, so a
task is accepted with a single round trip and can never be recorded without being queued
(or queued without being recorded). This module renders the exact JSON that kombu's Redis
transport stores for `send_task(...)` (Celery task protocol 2) for a new task, here in the
gateway rather than in Valkey, which serves every process. Later dispatches (a task woken
for a V1 slot, a re-run, a retry) are rendered by the script that publishes them
(`run_message` in `lua/prelude.lua`). `tests/test_message.py` compares both, field by field,
with what Celery itself publishes, so drift is caught.
"""

from __future__ import annotations

import base64
import os
import socket
import uuid
from json.encoder import encode_basestring_ascii as json_string

import orjson

from taskrecord.broker import RUN_TASK
from taskrecord.dispatch import message_id

_ORIGIN = f"gateway{os.getpid()}@{socket.gethostname()}"
_REPLY_TO = str(uuid.uuid4())  # unused (results are ignored) but part of the envelope
# The body's tail after its args, as Celery's json.dumps spells it (the body is compared
# byte for byte where Celery decodes it); the envelope around it is compact (orjson: the
# submit path renders one per task), which kombu reads the same.
_BODY_TAIL = ', {}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]'


def run_message(task_id: str, dispatch_no: int, queue: str) -> str:
    args = [task_id, str(dispatch_no)]
    mid = message_id(task_id, dispatch_no)
    body = f"[[{json_string(task_id)}, {json_string(args[1])}]{_BODY_TAIL}".encode()
    headers: dict[str, object] = {
        "lang": "py",
        "task": RUN_TASK,
        "id": mid,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": mid,
        "parent_id": None,
        "argsrepr": repr(args),
        "kwargsrepr": "(redacted)",
        "origin": _ORIGIN,
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    return orjson.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                "correlation_id": mid,
                "reply_to": _REPLY_TO,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    ).decode()
