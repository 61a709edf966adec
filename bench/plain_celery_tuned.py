"""Baseline: Celery as a competent user would set it up for this work (issue 12).

The same calls as `bench/plain_celery.py` (same broker and result backend, default prefork
pool, early ack, prefetch 4), with two things a user would do on day one:

- one shared `httpx.Client` per worker process (its connection pool is kept between tasks),
  made on first use in that process, so a prefork child never shares the parent's sockets;
- ordinary `task_routes`: `plain.call_v1_short` goes to queue `short`, `plain.call_v1_long`
  to queue `long`, so one worker per queue (`-Q short`, `-Q long`) keeps short work from
  waiting behind long work.

`plain.call_v1_tuned` (default queue `celery`) is the tuned call for a worker started without
`-Q`, as the textbook one is.

    PLAIN_BROKER_URL=redis://127.0.0.1:6379/5 PLAIN_V1_URL=http://127.0.0.1:18790 \
        celery -A bench.plain_celery_tuned worker [-Q short]
"""

from __future__ import annotations

import os

import httpx
from celery import Celery

BROKER_URL = os.environ.get("PLAIN_BROKER_URL", "redis://127.0.0.1:6379/0")
V1_URL = os.environ.get("PLAIN_V1_URL", "http://127.0.0.1:18790")
V1_TOKEN = os.environ.get("PLAIN_V1_TOKEN", "sim-token")

app = Celery("plain_tuned", broker=BROKER_URL, backend=BROKER_URL)
app.conf.task_routes = {
    "plain.call_v1_short": {"queue": "short"},
    "plain.call_v1_long": {"queue": "long"},
}

_client: httpx.Client | None = None
_client_pid = 0


def client() -> httpx.Client:
    """This process's client (prefork forks after import: a new one per child)."""
    global _client, _client_pid
    if _client is None or _client_pid != os.getpid():
        _client = httpx.Client(
            base_url=V1_URL,
            headers={"Authorization": f"Bearer {V1_TOKEN}"},
            timeout=600,
            trust_env=False,
        )
        _client_pid = os.getpid()
    return _client


def _call(message: str) -> str:
    response = client().post(
        "/v1/chat/completions",
        json={"model": "openclaw", "messages": [{"role": "user", "content": message}]},
    )
    response.raise_for_status()
    content: str = response.json()["choices"][0]["message"]["content"]
    return content


@app.task(name="plain.call_v1_tuned")  # type: ignore[untyped-decorator]
def call_v1_tuned(message: str) -> str:
    return _call(message)


@app.task(name="plain.call_v1_short")  # type: ignore[untyped-decorator]
def call_v1_short(message: str) -> str:
    return _call(message)


@app.task(name="plain.call_v1_long")  # type: ignore[untyped-decorator]
def call_v1_long(message: str) -> str:
    return _call(message)


def configure(broker_url: str) -> Celery:
    """Point the app at a broker from a process that imported this module (the bench)."""
    app.conf.update(broker_url=broker_url, result_backend=broker_url)
    return app
