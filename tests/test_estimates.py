"""`taskrecord.estimator.EstimateCache`: the client's hint first, then what the agent's
finished tasks taught (at least 0.1 s, even for an agent answering in milliseconds), then
the heuristic."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord import keys
from taskrecord.estimator import MIN_SAMPLES, Estimate, EstimateCache, heuristic_seconds


def test_estimates_in_their_order_of_trust(tmp_path: Path) -> None:
    async def scenario() -> list[Estimate]:
        client = aioredis.Redis.from_url(server.url)
        try:
            await client.hset(keys.ESTIMATES, mapping={
                "fast:n": MIN_SAMPLES, "fast:mean": "0.004",
                "slow:n": MIN_SAMPLES, "slow:mean": "42.26",
                "new:n": MIN_SAMPLES - 1, "new:mean": "9",
            })  # fmt: skip
            cache = EstimateCache(client)
            return [
                await cache.estimate("fast", 10, 7.5),
                await cache.estimate("fast", 10, None),
                await cache.estimate("slow", 10, None),
                await cache.estimate("new", 800, None),
            ]
        finally:
            await client.aclose()

    with EmbeddedValkey(tmp_path, appendonly=False) as server:
        found = asyncio.run(scenario())
    assert found == [
        Estimate(7.5, "client"),
        Estimate(0.1, "learned"),
        Estimate(42.3, "learned"),
        Estimate(heuristic_seconds(800), "heuristic"),
    ]
