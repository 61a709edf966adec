"""`tasks.lease_renewer`: in a gevent process the leases of running tasks are renewed on time
while the event loop is kept busy longer than a lease (its greenlets never yielding), stop
being renewed once it has been silent for two leases (stuck, not busy), and a lease found
lost stops its task on the loop. Each case runs in a gevent process of its own against the
suite's Valkey; the loop is kept busy with CPU work that never yields."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid

from deploy.embedded_valkey import EmbeddedValkey

LEASE = 1.5  # the renewer renews every LEASE / 3 and calls the loop stuck after 2 * LEASE

_PROBE = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()
    import json, sys, time, types
    import gevent, redis
    from taskrecord import keys
    from taskrecord.live import LiveStore
    from taskrecord.settings import Settings
    from tasks.lease_renewer import LeaseRenewer
    from tasks.running import RunningTask

    url, task_id, lease, busy = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    settings = Settings(redis_url=url, lease_seconds=lease)
    client = redis.Redis.from_url(url)
    client.hset(keys.task_key(task_id), mapping={
        "state": "running", "attempt_token": "tok", "tenant": "t"})
    runtime = types.SimpleNamespace(
        settings=settings, redis=client, live=LiveStore(client, settings))
    task = RunningTask(task_id, "tok", gevent.getcurrent(), time.time() + 600, None)
    renewer = LeaseRenewer(runtime, {task_id: task})
    renewer.start()

    def lease_until():
        return client.zscore(keys.LEASES, task_id)

    deadline = time.time() + 10
    while lease_until() is None and time.time() < deadline:
        gevent.sleep(0.05)
    first = lease_until()
    busy_from = time.time()
    while time.time() - busy_from < busy:  # the loop kept busy: nothing else runs on it
        pass
    busy_until = time.time()
    after_busy = lease_until()
    # Another attempt takes the task: the next round finds the lease lost and stops it.
    client.hset(keys.task_key(task_id), "attempt_token", "another")
    deadline = time.time() + 10
    while task.stop_reason is None and time.time() < deadline:
        gevent.sleep(0.05)
    renewer.greenlet.kill()
    renewer.close()
    client.delete(keys.task_key(task_id))
    client.zrem(keys.LEASES, task_id)
    print(json.dumps({
        "first": first, "busy_from": busy_from, "busy_until": busy_until,
        "after_busy": after_busy, "stopped": type(task.stop_reason).__name__}))
    """
)


def probe(valkey: EmbeddedValkey, busy_seconds: float) -> dict[str, float | str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, valkey.url, f"lease-{uuid.uuid4().hex}", str(LEASE),
         str(busy_seconds)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, float | str] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_leases_are_renewed_while_the_loop_is_busy_longer_than_a_lease(
    valkey: EmbeddedValkey,
) -> None:
    seen = probe(valkey, busy_seconds=LEASE * 1.5)
    # Renewed during the busy spell: the lease still ran when it ended (a greenlet renewer
    # left it at its first value, run out a lease after the spell began).
    assert float(seen["after_busy"]) > float(seen["busy_until"]) > float(seen["first"])
    assert seen["stopped"] == "LeaseLost"


def test_a_loop_silent_for_two_leases_lets_its_leases_run_out(valkey: EmbeddedValkey) -> None:
    seen = probe(valkey, busy_seconds=LEASE * 4)
    # Renewed for about two leases of silence, then left: it ran out before the spell ended.
    assert float(seen["after_busy"]) < float(seen["busy_until"])
    assert float(seen["after_busy"]) > float(seen["busy_from"]) + LEASE
    assert seen["stopped"] == "LeaseLost"
