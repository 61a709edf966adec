"""Whether this process runs under gevent (a `-P gevent` worker patches the standard library
before anything of ours is imported); a solo or threads worker and tests run without it."""

from __future__ import annotations

from gevent import monkey


def gevent_patched() -> bool:
    return bool(monkey.is_module_patched("socket"))
