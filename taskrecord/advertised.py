"""Which workers consume a queue now, as they advertise it (`tasks.consumers` writes the
advertisements): read by the autoscaler, operators and tests, without importing Celery."""

from __future__ import annotations

import redis

from taskrecord import keys


def live_consumers(client: redis.Redis, queue: str) -> list[str]:
    """Workers advertised as consuming `queue` now (the autoscaler, operators, tests)."""
    seconds, micros = client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    names = client.zrangebyscore(keys.consumers_key(queue), f"({now_ms}", "+inf")
    return sorted(n.decode() if isinstance(n, bytes) else str(n) for n in names)
