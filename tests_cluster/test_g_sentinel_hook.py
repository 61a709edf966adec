"""The hook a Sentinel scenario builds on: sentinels started on the data host find the
cluster's Valkey as master `openclaw` (no failover here: that scenario is separate work)."""

from __future__ import annotations

from typing import Any

import redis

from testbed.process import wait_until
from tests_cluster.cluster import Cluster
from tests_cluster.conftest import SentinelStarter
from tests_cluster.servers import VALKEY_PORT


def test_sentinels_on_the_data_host_watch_valkey(
    cluster: Cluster, data_host_sentinels: SentinelStarter
) -> None:
    started = data_host_sentinels(3, 2)
    data = cluster.host("data").address
    sentinel = redis.Redis(host=data, port=26379, socket_timeout=2, decode_responses=True)

    def master() -> object:
        try:
            return sentinel.sentinel_get_master_addr_by_name("openclaw")
        except redis.RedisError:
            return None

    assert wait_until(master, 20, 0.2, "sentinel to answer") == (data, VALKEY_PORT)

    def peers() -> list[dict[str, Any]] | None:
        found = sentinel.sentinel_sentinels("openclaw")
        return found if isinstance(found, list) and len(found) == 2 else None

    known = wait_until(peers, 20, 0.2, "each sentinel to find the two others")
    sentinel.close()
    for index, proc in enumerate(started):
        cluster.retire(f"sentinel-{index}")
        assert not proc.alive()
    assert len(known) == 2
