"""Our hand-built queue message equals what Celery's own producer publishes."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord.dispatch import dispatch
from taskrecord.message import run_message
from taskrecord.settings import get_settings
from tasks.celery_app import create_celery_app

VARIABLE = {("headers", "origin"), ("properties", "reply_to"), ("properties", "delivery_tag")}


def strip(message: dict[str, dict[str, object]]) -> dict[str, object]:
    return {
        part: {k: v for k, v in value.items() if (part, k) not in VARIABLE}
        if isinstance(value, dict) else value
        for part, value in message.items()
    }  # fmt: skip


def test_message_matches_celerys_own_publish(tmp_path: Path) -> None:
    with EmbeddedValkey(tmp_path) as server:
        celery = create_celery_app(get_settings(redis_url=server.url, v1_url="http://v1"))
        client = redis.Redis.from_url(server.url)
        try:
            for dispatch_no in (1, 3):
                dispatch(celery, "0b4e7c62-3f0a-4f7e-9c55-1d2c3b4a5f60", "long", dispatch_no)
                theirs = json.loads(client.rpop("long") or b"{}")
                ours = json.loads(run_message("0b4e7c62-3f0a-4f7e-9c55-1d2c3b4a5f60",
                                              dispatch_no, "long"))  # fmt: skip
                assert strip(ours) == strip(theirs)
        finally:
            celery.close()
            client.close()
