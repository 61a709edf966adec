"""The one way to connect to Redis/Valkey from Settings: sync, asyncio, and the Celery broker.

REDIS_URL alone: that server. With REDIS_SENTINELS: the current primary of
REDIS_SENTINEL_MASTER as the sentinels report it; every new connection asks them again, so
after a failover the clients (and kombu's broker connections) reach the promoted replica.
REDIS_URL then gives only the database number, user and password (its host is ignored).

Lua scripts need nothing more: the runners (redis-py's Script, pipelines' load_scripts)
load a script again when the server answers NOSCRIPT, as a promoted replica does.
"""

from __future__ import annotations

from typing import Any, cast
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

from taskrecord.hiredis_packing import pack_with_hiredis
from taskrecord.settings import Settings

# A dead sentinel must not hold a caller for long: the next one is asked instead.
SENTINEL_TIMEOUT = 2.0


def sentinel_addresses(settings: Settings) -> list[tuple[str, int]]:
    """REDIS_SENTINELS as (host, port) pairs; empty when Sentinel is not used."""
    found: list[tuple[str, int]] = []
    listed = settings.redis_sentinels or ""
    for item in filter(None, (part.strip() for part in listed.split(","))):
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"REDIS_SENTINELS must look like `host:port,host:port` ({item!r})")
        found.append((host.strip("[]"), int(port)))
    return found


def sentinel_options(settings: Settings, *, for_asyncio: bool = False) -> dict[str, Any]:
    """How to talk to the sentinels themselves (not the data nodes). No retry: redis-py
    would retry a refused sentinel 3 times with backoff (about 4 s) before asking the next
    one, on every primary lookup; the next sentinel is the retry."""
    no_retry = (AsyncRetry if for_asyncio else Retry)(NoBackoff(), 0)
    options: dict[str, Any] = {
        "socket_timeout": SENTINEL_TIMEOUT,
        "socket_connect_timeout": SENTINEL_TIMEOUT,
        "retry": no_retry,
    }
    if settings.redis_sentinel_password is not None:
        options["password"] = settings.redis_sentinel_password.get_secret_value()
    return options


def _primary_options(settings: Settings) -> dict[str, Any]:
    """What REDIS_URL still says under Sentinel: database, user, password, TLS options."""
    url = settings.require_redis_url()
    options = {
        name: value
        for name, value in parse_url(url).items()  # type: ignore[no-untyped-call]
        if name not in ("host", "port", "path", "connection_class")
    }
    if urlsplit(url).scheme == "rediss":
        options["ssl"] = True  # the sentinel pool then uses its TLS connection class
    return options


def redis_client(settings: Settings, **options: Any) -> redis.Redis:
    """A synchronous client (workers, maintenance, CLI, the gateway's steering calls)."""
    sentinels = sentinel_addresses(settings)
    if not sentinels:
        return redis.Redis.from_url(settings.require_redis_url(), **options)
    manager = Sentinel(sentinels, sentinel_kwargs=sentinel_options(settings))  # type: ignore[no-untyped-call]
    return cast(
        redis.Redis,
        manager.master_for(  # type: ignore[no-untyped-call]
            settings.redis_sentinel_master,
            redis_class=redis.Redis,
            **{**_primary_options(settings), **options},
        ),
    )


def async_redis_client(settings: Settings, **options: Any) -> aioredis.Redis:
    """An asyncio client (the gateway)."""
    sentinels = sentinel_addresses(settings)
    if not sentinels:
        return pack_with_hiredis(aioredis.Redis.from_url(settings.require_redis_url(), **options))
    manager = AsyncSentinel(sentinels, sentinel_kwargs=sentinel_options(settings, for_asyncio=True))  # type: ignore[no-untyped-call]
    return pack_with_hiredis(
        cast(
            aioredis.Redis,
            manager.master_for(
                settings.redis_sentinel_master,
                redis_class=aioredis.Redis,
                **{**_primary_options(settings), **options},
            ),
        )
    )


def broker_url(settings: Settings) -> str:
    """Celery's broker URL: REDIS_URL, or kombu's `sentinel://a;sentinel://b` form with
    REDIS_URL's credentials and database (the primary's name is a transport option)."""
    sentinels = sentinel_addresses(settings)
    url = settings.require_redis_url()
    if not sentinels:
        return url
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    prefix = f"{auth}@" if auth else ""
    path = parts.path if parts.path not in ("", "/") else "/0"
    return ";".join(
        f"sentinel://{prefix}{f'[{host}]' if ':' in host else host}:{port}{path}"
        for host, port in sentinels
    )


def broker_sentinel_options(settings: Settings) -> dict[str, Any]:
    """kombu transport options the `sentinel://` transport needs; none without Sentinel."""
    if not sentinel_addresses(settings):
        return {}
    return {
        "master_name": settings.redis_sentinel_master,
        "sentinel_kwargs": sentinel_options(settings),
    }


def ping(settings: Settings, timeout: float) -> None:
    """Raise a RedisError unless the server (under Sentinel: the current primary) answers."""
    client = redis_client(settings, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        client.ping()
    finally:
        client.close()
