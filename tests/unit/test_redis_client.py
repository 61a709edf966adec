"""How REDIS_SENTINELS turns into clients and into Celery's broker settings."""

from __future__ import annotations

import pytest
from redis.sentinel import SentinelConnectionPool

from taskrecord.broker import celery_config
from taskrecord.redis_client import broker_url, redis_client, sentinel_addresses
from taskrecord.settings import get_settings


def test_without_sentinels_nothing_changes() -> None:
    settings = get_settings(redis_url="redis://:pw@10.0.0.5:6380/3")
    assert sentinel_addresses(settings) == []
    config = celery_config(settings)
    assert config["broker_url"] == "redis://:pw@10.0.0.5:6380/3"
    assert "master_name" not in config["broker_transport_options"]
    client = redis_client(settings)
    assert client.connection_pool.connection_kwargs["host"] == "10.0.0.5"
    client.close()


def test_sentinels_give_kombu_urls_and_a_sentinel_pool() -> None:
    settings = get_settings(
        redis_url="redis://:data-pw@ignored:1/4",
        redis_sentinels="10.0.0.1:26379, 10.0.0.2:26380",
        redis_sentinel_master="main",
        redis_sentinel_password="sentinel-pw",
    )
    assert sentinel_addresses(settings) == [("10.0.0.1", 26379), ("10.0.0.2", 26380)]
    assert broker_url(settings) == (
        "sentinel://:data-pw@10.0.0.1:26379/4;sentinel://:data-pw@10.0.0.2:26380/4"
    )
    options = celery_config(settings)["broker_transport_options"]
    assert options["master_name"] == "main"
    assert options["sentinel_kwargs"]["password"] == "sentinel-pw"
    assert options["visibility_timeout"] > 0  # the usual options are kept
    client = redis_client(settings, socket_timeout=5)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "main"
    kwargs = pool.connection_kwargs
    assert (kwargs["db"], kwargs["password"], kwargs["socket_timeout"]) == (4, "data-pw", 5)
    assert "host" not in kwargs  # the primary's address comes from the sentinels
    client.close()


@pytest.mark.parametrize("value", ["10.0.0.1", "10.0.0.1:port", ":26379"])
def test_a_malformed_sentinel_list_is_refused_clearly(value: str) -> None:
    settings = get_settings(redis_url="redis://x/0", redis_sentinels=value)
    with pytest.raises(ValueError, match="REDIS_SENTINELS must look like"):
        sentinel_addresses(settings)
