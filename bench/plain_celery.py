"""Baseline: the textbook Celery setup the issues compare against.

Default Celery settings (default queue `celery`, prefetch multiplier 4, early ack, default
prefork pool with one process per core unless `-c` is given), Redis broker and Redis result
backend, and a task that calls V1 with `httpx.post(...)` - a new client per call - and
returns the answer text. Nothing here is tuned.

    PLAIN_BROKER_URL=redis://127.0.0.1:6379/5 PLAIN_V1_URL=http://127.0.0.1:18790 \
        celery -A bench.plain_celery worker
"""

from __future__ import annotations

import os

import httpx
from celery import Celery

BROKER_URL = os.environ.get("PLAIN_BROKER_URL", "redis://127.0.0.1:6379/0")
V1_URL = os.environ.get("PLAIN_V1_URL", "http://127.0.0.1:18790")
V1_TOKEN = os.environ.get("PLAIN_V1_TOKEN", "sim-token")

app = Celery("plain", broker=BROKER_URL, backend=BROKER_URL)


@app.task(name="plain.call_v1")  # type: ignore[untyped-decorator]
def call_v1(message: str) -> str:
    response = httpx.post(
        f"{V1_URL}/v1/chat/completions",
        json={"model": "openclaw", "messages": [{"role": "user", "content": message}]},
        headers={"Authorization": f"Bearer {V1_TOKEN}"},
        timeout=600,
    )
    response.raise_for_status()
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


def configure(broker_url: str) -> Celery:
    """Point the app at a broker from a process that imported this module (the bench)."""
    app.conf.update(broker_url=broker_url, result_backend=broker_url)
    return app
