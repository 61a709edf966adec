"""`taskrecord.hiredis_packing`: the gateway's asyncio connections pack commands with hiredis
and send exactly the bytes redis-py's own Python packer would (TCP, TLS and Sentinel-managed
connections alike); a bad argument is still redis' DataError."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection, SSLConnection
from redis.asyncio.sentinel import SentinelManagedConnection
from redis.exceptions import DataError

from taskrecord.hiredis_packing import HiredisPacking
from taskrecord.redis_client import async_redis_client
from taskrecord.settings import get_settings

COMMANDS = [
    ("EVALSHA", "a" * 40, 1, "v2:task:x", "x", 0.1, 3.0, 1e-7, 15, -2, b"\x00\xffraw", "é 🦀"),
    ("SET", "k", "v" * 10_000),  # larger than redis-py's buffer cutoff: chunked there
    ("CLIENT SETNAME", "gw"),  # a two-word command name is split, as redis-py does
]


def _python_packed(*args: object) -> bytes:
    return b"".join(Connection().pack_command(*args))


@pytest.mark.parametrize("command", COMMANDS, ids=["script", "large", "two-word"])
def test_hiredis_packs_the_same_bytes(command: tuple[object, ...]) -> None:
    packer = type("Packing", (HiredisPacking, Connection), {})()
    assert b"".join(packer.pack_command(*command)) == _python_packed(*command)
    pipelined = b"".join(packer.pack_commands([command, command]))
    assert pipelined == _python_packed(*command) * 2


def test_a_bad_argument_is_a_data_error() -> None:
    packer = type("Packing", (HiredisPacking, Connection), {})()
    with pytest.raises(DataError):
        packer.pack_command("SET", "k", None)


@pytest.mark.parametrize(
    ("overrides", "base"),
    [
        ({"redis_url": "redis://127.0.0.1:6379/0"}, Connection),
        ({"redis_url": "rediss://127.0.0.1:6380/0"}, SSLConnection),
        ({"redis_url": "redis://:pw@ignored:1/2", "redis_sentinels": "127.0.0.1:26379"},
         SentinelManagedConnection),
    ],
    ids=["tcp", "tls", "sentinel"],
)  # fmt: skip
def test_the_gateway_client_packs_with_hiredis(overrides: dict[str, str], base: type) -> None:
    client: aioredis.Redis = async_redis_client(get_settings(v1_url="http://x", **overrides))
    made = client.connection_pool.connection_class
    assert issubclass(made, HiredisPacking) and issubclass(made, base)
