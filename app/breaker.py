"""Circuit breaker in front of V1, shared by every worker through Redis.

closed -> (BREAKER_THRESHOLD consecutive failures) -> open for BREAKER_COOLDOWN seconds ->
half-open: one probe task is let through; its success closes the breaker, its failure
opens it again. While it is open, workers hold the tasks they fetched (the rest stay in
the queues): queued work waits instead of failing, and no attempt is spent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from app import keys
from app.live import pairs, text

# ARGV: now-free; cooldown probe TTL. Returns {'closed'} | {'probe'} | {'open', until}.
_CHECK = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local st = redis.call('HGET', KEYS[1], 'state') or 'closed'
if st == 'closed' then return {'closed'} end
local until_ = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if now < until_ then return {'open', tostring(until_)} end
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('HSET', KEYS[1], 'state', 'half_open')
  return {'probe'}
end
return {'open', tostring(now + 1)}
"""

# ARGV: ok (1/0), threshold, cooldown. Returns the state after recording.
_RECORD = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local st = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[1] == '1' then
  if st ~= 'closed' or redis.call('HGET', KEYS[1], 'failures') ~= '0' then
    redis.call('HSET', KEYS[1], 'state', 'closed', 'failures', '0', 'closed_at', now)
    redis.call('DEL', KEYS[2])
  end
  return 'closed'
end
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if st == 'half_open' or (st == 'closed' and failures >= tonumber(ARGV[2])) then
  redis.call('HSET', KEYS[1], 'state', 'open', 'until', now + tonumber(ARGV[3]),
    'opened_at', now)
  redis.call('HINCRBY', KEYS[1], 'times_opened', 1)
  redis.call('DEL', KEYS[2])
  return 'open'
end
return st
"""

PROBE_KEY = f"{keys.BREAKER}:probe"


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    probe: bool = False
    retry_at: float = 0.0


class Breaker:
    def __init__(self, client: redis.Redis, threshold: int, cooldown: float) -> None:
        self.redis = client
        self.threshold = threshold
        self.cooldown = cooldown
        self._check = client.register_script(_CHECK)
        self._record = client.register_script(_RECORD)

    def check(self) -> Verdict:
        raw = [text(v) for v in self._check(keys=[keys.BREAKER, PROBE_KEY],
                                            args=[int(self.cooldown) + 30])]  # fmt: skip
        if raw[0] == "closed":
            return Verdict(True)
        if raw[0] == "probe":
            return Verdict(True, probe=True)
        return Verdict(False, retry_at=float(raw[1]))

    def record(self, ok: bool) -> str:
        return text(self._record(keys=[keys.BREAKER, PROBE_KEY],
                                 args=[1 if ok else 0, self.threshold, self.cooldown]))  # fmt: skip


def describe(raw: dict[Any, Any]) -> dict[str, str]:
    """The breaker hash as operators see it."""
    fields = pairs([v for pair in raw.items() for v in pair])
    return {"state": fields.get("state", "closed"), **fields}
