"""Every key the system writes to Redis has a TTL or is bounded by design."""

from __future__ import annotations

import re

import redis

from tests.harness import System, submit, wait_terminal

# Keys without a TTL, each bounded by something other than time.
BOUNDED = [
    (r"^(priority|short|long)$", "Celery queues: at most QUEUE_LIMIT messages (429 beyond)"),
    (r"^webhooks$", "Celery queue of webhook attempts: at most one message per due delivery"),
    (r"^v2:webhooks-due$", "one entry per pending webhook delivery"),
    (r"^v2:schedules-due$", "one entry per schedule (TENANT_MAX_SCHEDULES per tenant)"),
    (r"^_kombu\.binding(_permanent\.|\.|_deadlines$)", "kombu's queue bindings"),
    (r"^unacked(_index|_mutex)?$", "kombu's unacked messages: at most the workers' slots"),
    (r"^v2:(leases|deadlines|dispatch-due|unpersisted)$", "one entry per live task"),
    (r"^v2:v1(slots|wait):[0-9a-f]+$", "V1 budget: running / waiting tasks"),
    (r"^v2:v1wait:[0-9a-f]+:([A-Za-z0-9_.-]+|\*)$", "a tenant's tasks waiting for a V1 slot"),
    (r"^v2:v1(wait-tenants|vclock):[0-9a-f]+$", "fair share: one entry per waiting tenant"),
    (r"^v2:(estimates|breaker|breaker:probe|paused-queues)$", "one per agent / queue / V1"),
]


def test_every_key_has_a_ttl_or_a_bound(system: System, redis_client: redis.Redis) -> None:
    with system.client() as api:
        task = submit(api, "leave traces", session_id="s-keys")
        wait_terminal(api, task["task_id"])
    unexplained = []
    for raw in redis_client.scan_iter(count=1000):
        name = raw.decode()
        if redis_client.ttl(raw) >= 0:
            continue
        if not any(re.search(pattern, name) for pattern, _why in BOUNDED):
            unexplained.append(name)
    assert unexplained == []
    assert redis_client.ttl(f"v2:task:{task['task_id']}") > 0
    assert redis_client.ttl(f"v2:events:{task['task_id']}") > 0
