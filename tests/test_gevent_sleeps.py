"""A gevent worker's retry pauses cooperate (tasks.gevent_mode): kombu and redis-py bind
`time.sleep` at import, before gevent patches `time` in a worker (its thread patching loads
Celery's config first), so their reconnect pauses blocked the whole process: every greenlet
stood still for 2 s, then 4 s, while a Sentinel failover went on, and tasks lost their
leases. Checked in a process started as a worker starts, and in the shared system's worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

from tasks.gevent_mode import CAPTURED_SLEEP
from tests.harness import System

STARTED_AS_A_WORKER = textwrap.dedent(
    """
    import json, sys
    sys.argv = ["celery", "-A", "tasks", "worker", "-P", "gevent"]
    import celery
    celery.maybe_patch_concurrency()
    from gevent import monkey
    import celery.bin.celery, celery.worker.consumer.consumer, kombu.connection
    import kombu.transport.redis, redis, tasks, tasks.run
    from tasks.gevent_mode import cooperative_sleeps

    blocking = monkey.get_original("time", "sleep")

    def holding_blocking_sleep():
        return sorted(
            name for name, module in list(sys.modules.items())
            if module is not None and not name.startswith("gevent")
            and name != "time" and getattr(module, "sleep", None) is blocking
        )

    before = holding_blocking_sleep()
    changed = cooperative_sleeps()
    print(json.dumps({"before": before, "changed": changed, "after": holding_blocking_sleep()}))
    """
)


def test_no_module_keeps_a_blocking_sleep_in_a_gevent_worker() -> None:
    env = {**os.environ, "REDIS_URL": "redis://127.0.0.1:9/0", "V1_URL": "http://v1.test"}
    done = subprocess.run(
        [sys.executable, "-c", STARTED_AS_A_WORKER],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    )  # fmt: skip
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(found["before"]) <= set(CAPTURED_SLEEP), found  # every one is known
    assert found["changed"] == found["before"], found
    assert found["after"] == [], found


def test_the_worker_takes_gevent_sleeps_as_it_starts(system: System) -> None:
    workers = [p for p in system.processes if p.name.startswith("worker-")]
    assert workers
    for worker in workers:
        assert "gevent sleep for kombu.utils.functional, redis.retry" in worker.log()
