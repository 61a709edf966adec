"""How many worker processes a queue's pool should run: the autoscaler's decision, pure.

Load is the queue's depth plus the tasks its serving processes hold; a process is meant to
hold `per_process` of them (WORKER_CONCURRENCY, the seeds' 50). Growing is immediate: a
burst should not wait. Shrinking waits for the load to have called for fewer processes
during a whole cooldown window, and goes only down to the most that window ever asked for
(the "stabilization window" of Kubernetes' HPA), so a dip between two bursts drains nothing
and the pool never flaps. A shrink drains processes, never kills them (deploy/autoscaler.py);
it picks the ones holding the fewest tasks, which finish soonest.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

# supervisord states of a slot that is (or is becoming) a live process.
LIVE_STATES = frozenset({"STARTING", "RUNNING", "BACKOFF"})


@dataclass(frozen=True)
class PoolConfig:
    queue: str
    minimum: int
    maximum: int
    slots: tuple[str, ...]  # supervisord program names, `maximum` of them, in start order
    per_process: int


@dataclass
class PoolState:
    """What the controller remembers between two looks."""

    draining: set[str] = field(default_factory=set)  # told to stop; finishing their tasks
    samples: deque[tuple[float, int]] = field(default_factory=deque)  # (when, desired)
    last_change: float = float("-inf")  # last scale-up (or start of the controller)


@dataclass(frozen=True)
class Decision:
    desired: int
    serving: int  # live processes not draining, before this decision
    start: tuple[str, ...] = ()
    drain: tuple[str, ...] = ()


def desired_size(config: PoolConfig, load: int) -> int:
    wanted = math.ceil(load / config.per_process) if load > 0 else 0
    return max(config.minimum, min(config.maximum, wanted))


def decide(
    config: PoolConfig,
    state: PoolState,
    now: float,
    cooldown: float,
    states: Mapping[str, str],
    depth: int,
    held: Mapping[str, int],
    ready: Collection[str] | None = None,
) -> Decision:
    """The next step for one pool, and the state updated for it.

    `states` maps slot -> supervisord state name; `held` slot -> tasks it runs now;
    `ready`: the slots whose worker has started (consumes its queue; None: all). Only those
    are drained: Celery installs its SIGTERM handler (warm shutdown) late in its start, so
    a worker still starting dies of the signal, and supervisord restarts a process that
    died unexpectedly; one still starting is drained by a later look, once it is ready (the
    choice stays the same: no busier process is drained in its place)."""
    live = [slot for slot in config.slots if states.get(slot) in LIVE_STATES]
    # A drained process that exited is a free slot again.
    state.draining.intersection_update(live)
    serving = [slot for slot in live if slot not in state.draining]
    # Tasks on draining processes end there: they are no load for the others.
    load = depth + sum(held.get(slot, 0) for slot in serving)
    desired = desired_size(config, load)
    state.samples.append((now, desired))
    while state.samples and state.samples[0][0] < now - cooldown:
        state.samples.popleft()
    if desired > len(serving):
        free = [s for s in config.slots if s not in live]
        start = tuple(free[: desired - len(serving)])
        if start:
            state.last_change = now
        return Decision(desired, len(serving), start=start)
    if now - state.last_change < cooldown:
        return Decision(desired, len(serving))
    target = max(wanted for _, wanted in state.samples)
    if target >= len(serving):
        return Decision(desired, len(serving))
    # Fewest tasks first (drains soonest), then the most recently added slot.
    order = sorted(serving, key=lambda s: (held.get(s, 0), -config.slots.index(s)))
    drain = tuple(s for s in order[: len(serving) - target] if ready is None or s in ready)
    state.draining.update(drain)
    return Decision(desired, len(serving), drain=drain)
