"""What operators and /metrics both read: queue depths, paused queues, V1 budget, breaker."""

from __future__ import annotations

from dataclasses import dataclass

from app.context import GatewayContext
from taskrecord import keys
from taskrecord.breaker import describe
from taskrecord.live import budget_name, text
from taskrecord.states import QUEUES


@dataclass(frozen=True)
class Overview:
    depths: dict[str, int]
    paused: set[str]
    v1_in_use: int
    v1_waiting: int
    breaker: dict[str, str]


async def read_overview(ctx: GatewayContext) -> Overview:
    """One pipelined round trip."""
    budget = budget_name(ctx.settings.v1_url)
    pipe = ctx.redis.pipeline(transaction=False)
    for queue in QUEUES:
        pipe.llen(queue)
    pipe.hkeys(keys.PAUSED_QUEUES)
    pipe.zcard(keys.v1_slots(budget))
    pipe.zcard(keys.v1_wait(budget))
    pipe.hgetall(keys.BREAKER)
    *depths, paused, in_use, waiting, breaker = await pipe.execute()
    return Overview(
        depths=dict(zip(QUEUES, (int(d) for d in depths), strict=True)),
        paused={text(name) for name in paused},
        v1_in_use=int(in_use),
        v1_waiting=int(waiting),
        breaker=describe(breaker),
    )
