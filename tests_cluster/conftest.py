"""`make test-cluster`: one cluster of namespace hosts for the whole session (tests_cluster/
cluster.py). Each scenario breaks something; the autouse `healed` fixture undoes it after
the test (links up, servers and processes restarted), so the next scenario starts whole.

Needs root (network namespaces); a run killed half-way leaves namespaces that the next run
deletes (netns.remove_stale).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy.embedded_valkey import valkey_binary
from testbed.process import ManagedProcess
from tests.skip_policy import (  # noqa: F401  (hooks: a skip fails under CI=true)
    pytest_configure,
    pytest_make_collect_report,
    pytest_runtest_makereport,
)
from tests_cluster.cluster import Cluster
from tests_cluster.servers import VALKEY_PASSWORD, VALKEY_PORT


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.fail("the cluster test makes network namespaces: run it as root")
    # Readable by the PostgreSQL user (testbed.postgres checks its folder's parents).
    workdir = tmp_path_factory.mktemp("cluster")
    made = Cluster(workdir)
    try:
        made.start()
        yield made
    finally:
        made.stop()


@pytest.fixture(autouse=True)
def healed(cluster: Cluster) -> Iterator[None]:
    yield
    healed = cluster.heal()
    if healed:
        print(f"\n[cluster] restarted after the test: {', '.join(healed)}")


SentinelStarter = Callable[[int, int], list[ManagedProcess]]


@pytest.fixture
def data_host_sentinels(cluster: Cluster) -> SentinelStarter:
    """Hook for a Sentinel scenario: `start(count, quorum)` starts `count` sentinels on the
    data host (ports 26379...), watching the data host's Valkey as master `openclaw`.
    A scenario adds replicas with `cluster.start_on_host(...)` the same way."""
    data = cluster.host("data")

    def start(count: int, quorum: int) -> list[ManagedProcess]:
        started = []
        for index in range(count):
            conf = Path(cluster.workdir / "data" / f"sentinel-{index}.conf")
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.write_text(
                f"port {26379 + index}\nbind {data.address}\n"
                f"sentinel monitor openclaw {data.address} {VALKEY_PORT} {quorum}\n"
                f"sentinel auth-pass openclaw {VALKEY_PASSWORD}\n"
                "sentinel down-after-milliseconds openclaw 1000\n"
                "sentinel failover-timeout openclaw 5000\n"
            )
            command = [valkey_binary(), str(conf), "--sentinel"]
            started.append(cluster.start_on_host("data", f"sentinel-{index}", command))
        return started

    return start
