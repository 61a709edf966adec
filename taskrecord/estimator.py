"""Expected duration of a task, before it runs.

Order of trust: the client's `estimated_seconds`; then what this agent's finished tasks
took (an exponentially weighted mean kept in Redis, learnt by the script that ends a task
as succeeded: `finalize.lua`, weight EWMA_WEIGHT); then a rough guess from the message
length.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from taskrecord import keys

MIN_SAMPLES = 5
EWMA_WEIGHT = 0.2


@dataclass(frozen=True)
class Estimate:
    seconds: float
    source: str  # client | learned | heuristic


def heuristic_seconds(text_chars: int) -> float:
    # Agent runs cost seconds even for "hi"; long prompts tend to mean long work.
    return round(min(5.0 + text_chars / 400.0, 600.0), 1)


class EstimateCache:
    """The gateway's view of the learnt means, refreshed at most every `max_age` seconds per
    agent, so the submit path usually makes no Redis call for it."""

    def __init__(self, client: aioredis.Redis, max_age: float = 5.0) -> None:
        self.client = client
        self.max_age = max_age
        self._known: dict[str, tuple[float, float | None]] = {}  # agent -> (fetched, mean)

    async def estimate(self, agent_id: str, text_chars: int, hint: float | None) -> Estimate:
        if hint is not None:
            return Estimate(float(hint), "client")
        fetched, mean = self._known.get(agent_id, (0.0, None))
        if time.monotonic() - fetched > self.max_age:
            n, raw_mean = await self.client.hmget(
                keys.ESTIMATES, f"{agent_id}:n", f"{agent_id}:mean"
            )
            learnt = n is not None and raw_mean is not None and int(n) >= MIN_SAMPLES
            # At least 0.1 s: an agent answering in milliseconds has not a 0 s estimate
            # (which a client may not even give: `estimated_seconds` must be > 0).
            mean = max(0.1, round(float(raw_mean), 1)) if learnt and raw_mean else None
            if len(self._known) > 10_000:  # agents are few; never let this grow unbounded
                self._known.clear()
            self._known[agent_id] = (time.monotonic(), mean)
        if mean is not None:
            return Estimate(mean, "learned")
        return Estimate(heuristic_seconds(text_chars), "heuristic")
