"""Delivery tags of fetched run messages whose kombu `unacked` record claim.lua already
removed, so their ack skips its Redis round trip (issue 13: one of the few per short task).

The task's claim takes its message's delivery tag (`tasks.run_request.RunRequest` hands it
over) and removes the record in the same script; the task marks the tag here; the worker's
transport (`taskrecord.broker_transport`) acks it in memory only. Process-local: under a
pool whose tasks run in child processes nothing is marked and the parent acks as kombu
always does (removing nothing, harmlessly). Bounded by the messages a worker holds at once:
each tag leaves at its ack or reject.

Kept free of kombu imports: the task module imports it, and the transport must be imported
only once gevent has patched the process (see taskrecord.broker).
"""

from __future__ import annotations

import os

_settled: set[str] = set()
_acking_pid = 0  # the process whose transport acks with this module; 0: none yet


def acks_here() -> None:
    """Called by the transport's QoS: this process acks its messages through it."""
    global _acking_pid
    _acking_pid = os.getpid()


def mark(delivery_tag: str) -> None:
    # Only where this process acks (not a prefork child: its parent acks; nor a task
    # called without a worker's transport): no tag would ever leave otherwise.
    if delivery_tag and _acking_pid == os.getpid():
        _settled.add(delivery_tag)


def take(delivery_tag: str) -> bool:
    """True, once, for a tag that was marked (its record is gone already)."""
    try:
        _settled.remove(delivery_tag)
    except KeyError:
        return False
    return True


def pending() -> int:
    return len(_settled)
