"""kombu's Redis and Sentinel transports, with one Redis client object per channel.

kombu builds a new `redis.Redis` object for every command it sends outside its consuming
loop (`Channel.conn_or_acquire` -> `_create_client`): the unacked record of each fetched
message, its ack, each event or message it publishes. Building one fills redis-py's table
of ~200 response callbacks, ~8 % of a short task's CPU in a gevent worker (py-spy, issue
13). Those objects share the channel's connection pool and keep no state of their own
(every command still takes a pooled connection; a pipeline is a new object each time), so
one per channel serves them all. Selected through Celery's `broker_transport`
(`taskrecord.broker.TRANSPORTS`) for `redis://` and `sentinel://` URLs; imported by kombu
when it connects, never at start-up (see there).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis


class _OneClient:
    """Channel mixin: the synchronous client made once (again only if the channel got a
    new connection pool)."""

    _one_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # the consuming loop's own client: kombu keeps it already
            return super()._create_client(asynchronous=True)  # type: ignore[misc]
        pool = self.pool  # type: ignore[attr-defined]
        client = self._one_client
        if client is None or client.connection_pool is not pool:
            client = self._one_client = super()._create_client()  # type: ignore[misc]
        return client


class Channel(_OneClient, kombu_redis.Channel):
    pass


class SentinelChannel(_OneClient, kombu_redis.SentinelChannel):
    pass


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel
