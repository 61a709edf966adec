"""Commands of asyncio Redis clients packed by hiredis (C), as redis-py's synchronous
connections already pack them.

redis-py's asyncio connections pack every command in Python, argument by argument; a submit
sends one script call of about twenty arguments, and packing it was about a seventh of the
gateway's CPU per submit (py-spy, issue 13). The synchronous connections (workers,
maintenance) use hiredis' `pack_command` when hiredis is installed (it is a dependency); this
gives the gateway's connections the same packer, so both send the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis.connection import HiredisRespSerializer
from redis.utils import HIREDIS_AVAILABLE

_SERIALIZER = HiredisRespSerializer()
_made: dict[type, type] = {}


class HiredisPacking:
    """Connection mixin: pack with hiredis (raising redis' DataError for a bad argument)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        packed: list[bytes] = _SERIALIZER.pack(*args)
        return packed

    def pack_commands(self, commands: Iterable[Iterable[Any]]) -> list[bytes]:
        return [b"".join(part for command in commands for part in _SERIALIZER.pack(*command))]


def pack_with_hiredis(client: aioredis.Redis) -> aioredis.Redis:
    """`client`'s future connections pack with hiredis, whatever their class (TCP, TLS,
    Sentinel-managed); unchanged without hiredis."""
    pool = client.connection_pool
    base = pool.connection_class
    if HIREDIS_AVAILABLE and not issubclass(base, HiredisPacking):
        if base not in _made:
            _made[base] = type(f"Hiredis{base.__name__}", (HiredisPacking, base), {})
        pool.connection_class = _made[base]
    return client
