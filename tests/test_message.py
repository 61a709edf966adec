"""The queue messages we render equal what Celery's own producer publishes: the gateway's
(a new task) and the scripts' (a later dispatch: woken, re-run, retried)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import redis

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord import keys
from taskrecord.dispatch import dispatch
from taskrecord.live import LiveStore
from taskrecord.message import run_message
from taskrecord.publish import publish_due
from taskrecord.settings import get_settings
from tasks.celery_app import create_celery_app

VARIABLE = {("headers", "origin"), ("properties", "reply_to"), ("properties", "delivery_tag")}
TASK_ID = "0b4e7c62-3f0a-4f7e-9c55-1d2c3b4a5f60"


def strip(message: dict[str, dict[str, object]]) -> dict[str, object]:
    return {
        part: {k: v for k, v in value.items() if (part, k) not in VARIABLE}
        if isinstance(value, dict) else value
        for part, value in message.items()
    }  # fmt: skip


def rendered_by_script(live: LiveStore, dispatch_no: int) -> dict[str, object]:
    """What `publish` in prelude.lua pushes for a due task (take_due.lua)."""
    client = live.redis
    client.hset(keys.task_key(TASK_ID), mapping={
        "id": TASK_ID, "state": "queued", "queue": "long", "dispatch": str(dispatch_no),
    })  # fmt: skip
    client.zadd(keys.DISPATCH_DUE, {TASK_ID: time.time()})
    assert publish_due(live, [TASK_ID]) == 1
    message: dict[str, object] = json.loads(client.rpop("long") or b"{}")
    client.delete(keys.task_key(TASK_ID))
    return message


def test_rendered_messages_match_celerys_own_publish(tmp_path: Path) -> None:
    with EmbeddedValkey(tmp_path) as server:
        settings = get_settings(redis_url=server.url, v1_url="http://v1")
        celery = create_celery_app(settings)
        client = redis.Redis.from_url(server.url)
        live = LiveStore(client, settings)
        try:
            tags = set()
            for dispatch_no in (1, 3):
                dispatch(celery, TASK_ID, "long", dispatch_no)
                theirs = json.loads(client.rpop("long") or b"{}")
                gateways = json.loads(run_message(TASK_ID, dispatch_no, "long"))
                scripts = rendered_by_script(live, dispatch_no)
                for ours in (gateways, scripts):
                    # Byte for byte where Celery decodes it (the base64 body), equal elsewhere.
                    assert ours["body"] == theirs["body"]
                    assert strip(ours) == strip(theirs)
                tags.add(scripts["properties"]["delivery_tag"])  # type: ignore[index]
            assert len(tags) == 2  # kombu's `unacked` hash is keyed by it: one per message
        finally:
            celery.close()
            client.close()
