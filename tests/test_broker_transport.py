"""`taskrecord.broker_transport`: kombu's Redis transport with one Redis client object per
channel (issue 13), against the suite's real Valkey; and the start-up trap it must avoid."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Queue

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord.broker import TRANSPORTS, celery_config
from taskrecord.settings import get_settings


@pytest.fixture
def connection(valkey: EmbeddedValkey) -> Iterator[Connection]:
    conn = Connection(valkey.url.rsplit("/", 1)[0] + "/9", transport=TRANSPORTS["redis"])
    yield conn
    conn.release()


def test_the_config_names_the_transport_for_redis_and_sentinel_urls_only() -> None:
    def transport(**overrides: str) -> str | None:
        settings = get_settings(v1_url="http://transport-test", **overrides)
        return celery_config(settings)["broker_transport"]  # type: ignore[no-any-return]

    assert transport(redis_url="redis://127.0.0.1:6379/0") == TRANSPORTS["redis"]
    assert transport(redis_url="redis://127.0.0.1:6379/0", redis_sentinels="127.0.0.1:26379",
                     redis_sentinel_master="primary") == TRANSPORTS["sentinel"]  # fmt: skip
    assert transport(redis_url="rediss://127.0.0.1:6380/0") is None  # kombu's own


def test_a_channel_sends_every_command_through_one_client_and_still_works(
    connection: Connection,
) -> None:
    channel: Any = connection.default_channel
    first, second = channel._create_client(), channel._create_client()
    assert first is second and first.connection_pool is channel.pool
    queue = Queue("transport-test")
    received: list[object] = []
    with connection.Producer() as producer:
        for n in range(3):
            producer.publish({"n": n}, routing_key=queue.name, declare=[queue])

    def on_message(body: object, message: Any) -> None:
        received.append(body)
        message.ack()

    with connection.Consumer(queue, callbacks=[on_message]):
        while len(received) < 3:
            connection.drain_events(timeout=5)
    assert received == [{"n": 0}, {"n": 1}, {"n": 2}]
    client = channel._create_client()
    assert client.hlen(channel.unacked_key) == 0  # every ack went through the one client
    assert channel._create_client(asynchronous=True) is not client  # the consuming one


def test_loading_the_config_imports_no_kombu_transport() -> None:
    """A gevent worker loads `celeryconfig` while gevent is still patching (its lock scan
    touches Celery's lazy app), before `select` is patched: kombu's event-I/O module keeps
    the `select` it finds, so imported then, the worker's consuming loop blocked the
    whole process on a real `select` (seen: tasks taking minutes)."""
    code = textwrap.dedent(
        """
        import sys
        import celeryconfig
        assert celeryconfig.broker_transport.startswith("taskrecord.broker_transport:")
        loaded = [m for m in ("kombu.utils.eventio", "kombu.transport.redis",
                              "taskrecord.broker_transport") if m in sys.modules]
        assert not loaded, loaded
        print("ok")
        """
    )
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:6379/0", "V1_URL": "http://v1.test"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
