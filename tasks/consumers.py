"""Which workers consume which queue, advertised in Redis, and who is recycling a queue.

Each worker advertises itself per queue it consumes in `v2:consumers:<queue>`, a sorted set
worker name -> until when the advertisement holds (ms, Redis server time), refreshed every
second by its recycler and gone a few seconds after the worker stops refreshing it.

A worker past its lifetime may start draining only through `begin_recycle`, one Lua script
that checks and acts atomically: for every queue of the worker, another live consumer must
be advertised and no other worker may hold `v2:recycling:<queue>`; then it withdraws the
worker's advertisements and takes those locks (TTL, refreshed while it drains). So a queue
never loses its last consumer to a lifetime recycle, and two workers of one queue never
drain at the same time. A forced recycle (memory limit) skips the checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis

from taskrecord import keys

# Server time in ms, so workers on machines with skewed clocks agree.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: consumers keys. ARGV: worker, ttl_ms.
ADVERTISE = (
    _NOW
    + """
local until_ = now + tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('ZADD', key, until_, ARGV[1])
  redis.call('PEXPIRE', key, tonumber(ARGV[2]))
end
return 1
"""
)

# KEYS: consumers, recycling (per queue, in pairs). ARGV: worker, ttl_ms, force, queues...
# Returns {1, ''} when the worker may drain, else {0, 'alone:<queue>' | 'busy:<queue>'}.
BEGIN = (
    _NOW
    + """
local me, ttl, force = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
if not force then
  for i = 1, #KEYS, 2 do
    local queue = ARGV[3 + (i + 1) / 2]
    local holder = redis.call('GET', KEYS[i + 1])
    if holder and holder ~= me then return {0, 'busy:' .. queue} end
    local peers = 0
    for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[i], '(' .. now, '+inf')) do
      if name ~= me then peers = peers + 1 end
    end
    if peers == 0 then return {0, 'alone:' .. queue} end
  end
end
for i = 1, #KEYS, 2 do
  redis.call('ZREM', KEYS[i], me)
  local holder = redis.call('GET', KEYS[i + 1])
  if not holder or holder == me then
    redis.call('SET', KEYS[i + 1], me, 'PX', ttl)
  end
end
return {1, ''}
"""
)

# KEYS: recycling keys. ARGV: worker, ttl_ms. Extends the locks this worker holds.
HOLD = """
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('PEXPIRE', key, tonumber(ARGV[2])) end
end
return 1
"""

# KEYS: consumers, recycling (in pairs). ARGV: worker. Withdraws its adverts and locks.
LEAVE = """
for i = 1, #KEYS, 2 do
  redis.call('ZREM', KEYS[i], ARGV[1])
  if redis.call('GET', KEYS[i + 1]) == ARGV[1] then redis.call('DEL', KEYS[i + 1]) end
end
return 1
"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    why: str  # '' when allowed; else 'alone:<queue>' or 'busy:<queue>'

    def explain(self) -> str:
        kind, _, queue = self.why.partition(":")
        if kind == "alone":
            return f"no other worker consumes {queue}"
        return f"another worker of {queue} is recycling"


class ConsumerRegistry:
    """The advertisements and recycling locks of one worker (`name`) for its `queues`."""

    def __init__(self, client: redis.Redis, name: str, queues: Sequence[str], ttl: float):
        self.client = client
        self.name = name
        self.queues = sorted(queues)
        self.ttl_ms = int(ttl * 1000)
        self._advertise = client.register_script(ADVERTISE)
        self._begin = client.register_script(BEGIN)
        self._hold = client.register_script(HOLD)
        self._leave = client.register_script(LEAVE)

    def _pairs(self) -> list[str]:
        return [k for q in self.queues for k in (keys.consumers_key(q), keys.recycling_key(q))]

    def advertise(self) -> None:
        self._advertise(
            keys=[keys.consumers_key(q) for q in self.queues], args=[self.name, self.ttl_ms]
        )

    def begin_recycle(self, *, force: bool = False) -> Verdict:
        args = [self.name, self.ttl_ms, "1" if force else "0", *self.queues]
        allowed, why = self._begin(keys=self._pairs(), args=args)
        return Verdict(bool(allowed), why.decode() if isinstance(why, bytes) else str(why))

    def hold(self) -> None:
        self._hold(keys=[keys.recycling_key(q) for q in self.queues], args=[self.name, self.ttl_ms])

    def leave(self) -> None:
        self._leave(keys=self._pairs(), args=[self.name])
