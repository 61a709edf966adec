"""The event bridge's baseline: one process that receives every task's events.

What each gateway did before issue 13 (and what a gateway that subscribes to every event
still does): receive each event published by the scripts and parse it to find whether a
local client follows its task. Here: one `PSUBSCRIBE` on every task's channel
(`keys.task_events_channel`), with the gateway's own client library (redis.asyncio), each
message split into route and event and the event parsed; it follows nobody, so the work is
all overhead, as for an unfollowed task on a gateway.

    python -m bench.all_events_subscriber REDIS_URL
"""

from __future__ import annotations

import asyncio
import json
import sys

import redis.asyncio as aioredis

from taskrecord import keys


async def subscribe_all(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.psubscribe(keys.task_events_channel("*"))
    print("subscribed", flush=True)
    async for message in pubsub.listen():
        if message.get("type") == "pmessage":
            # route (tenant, agent, session) lines, then the event: as a gateway reads it
            _route, _, event = bytes(message["data"]).decode().rpartition("\n")
            json.loads(event)


def main() -> None:
    asyncio.run(subscribe_all(sys.argv[1]))


if __name__ == "__main__":
    main()
