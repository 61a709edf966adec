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

Their QoS acks a run message whose claim already removed its `unacked` record
(`taskrecord.settled_messages`) without the Redis pipeline kombu sends for every ack.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import QoS as VirtualQoS

from taskrecord import settled_messages


class SettledQoS(kombu_redis.QoS):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        settled_messages.acks_here()

    def ack(self, delivery_tag: str) -> None:
        if settled_messages.take(delivery_tag):
            VirtualQoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]  # in memory only
            return
        super().ack(delivery_tag)  # type: ignore[no-untyped-call]

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        settled_messages.take(delivery_tag)  # its task record decides; nothing to restore
        super().reject(delivery_tag, requeue=requeue)  # type: ignore[no-untyped-call]


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
    QoS = SettledQoS


class SentinelChannel(_OneClient, kombu_redis.SentinelChannel):
    QoS = SettledQoS


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel
