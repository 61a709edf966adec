"""`make test-cluster`: one cluster of namespace hosts for the whole session (tests_cluster/
cluster.py). Each scenario breaks something; the autouse `healed` fixture undoes it after
the test (links up, servers and processes restarted), so the next scenario starts whole.

Needs root (network namespaces); a run killed half-way leaves namespaces that the next run
deletes (netns.remove_stale).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.skip_policy import (  # noqa: F401  (hooks: a skip fails under CI=true)
    pytest_configure,
    pytest_make_collect_report,
    pytest_runtest_makereport,
)
from tests_cluster.cluster import Cluster
from tests_cluster.sentinels import CrossHostSentinels

# Workers at the test run's niceness, as in the main suite (why: tests/conftest.py).
os.environ.setdefault("WORKER_NICE", "0")


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


@pytest.fixture
def sentinel_system(cluster: Cluster) -> Iterator[CrossHostSentinels]:
    """Valkey primary on `data`, replica on `data2`, sentinels on data/data2/gw-a, and a
    system configured through them only (tests_cluster/sentinels.py); all stopped after."""
    made = CrossHostSentinels(cluster)
    try:
        made.start_servers()
        made.start_system()
        yield made
    finally:
        made.stop()
