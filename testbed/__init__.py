"""The real system as subprocesses, for the tests (`tests/harness.py`) and the benchmarks
(`bench/`): gateway, Celery workers and maintenance on real ports, each `System` on its own
Redis database and SQLite file.

No pytest here: a failed wait raises AssertionError, which pytest reports like an assert.
"""

from testbed.process import ROOT, ManagedProcess, wait_until
from testbed.system import ADMIN_KEY, API_KEY, OTHER_API_KEY, V1_TOKEN, System

__all__ = [
    "ADMIN_KEY",
    "API_KEY",
    "OTHER_API_KEY",
    "ROOT",
    "V1_TOKEN",
    "ManagedProcess",
    "System",
    "wait_until",
]
