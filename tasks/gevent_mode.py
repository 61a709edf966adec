"""Whether this process runs under gevent (a `-P gevent` worker patches the standard library
before anything of ours is imported); a solo or threads worker and tests run without it.
And the blocking sleeps gevent's patching misses there."""

from __future__ import annotations

import importlib

import gevent
from gevent import monkey

# Modules that bind `time.sleep` at import (`from time import sleep`) and are imported in a
# worker before gevent patches `time`: gevent patches threads first, and its scan of locks
# loads Celery's config, which imports kombu and redis-py. Their retry pauses (kombu's
# broker reconnects: 2 s, then 4 s, ...; redis-py's connect and command retries) blocked the
# whole process: every greenlet (lease renewals, finishes, V1 streams) stood still for
# seconds, and a 2.3 s Sentinel failover cost running tasks their leases.
CAPTURED_SLEEP = ("kombu.utils.functional", "redis.retry")


def gevent_patched() -> bool:
    return bool(monkey.is_module_patched("socket"))


def cooperative_sleeps() -> list[str]:
    """Under gevent, point the modules of CAPTURED_SLEEP at gevent's sleep; the names of
    those changed (none without gevent, or when they already cooperate)."""
    if not gevent_patched():
        return []
    blocking = monkey.get_original("time", "sleep")
    changed = []
    for name in CAPTURED_SLEEP:
        module = importlib.import_module(name)
        if getattr(module, "sleep", None) is blocking:
            module.sleep = gevent.sleep  # type: ignore[attr-defined]
            changed.append(name)
    return changed
