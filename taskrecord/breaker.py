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

from taskrecord import keys, live_scripts
from taskrecord.live import pairs, text
from taskrecord.live_scripts import ScriptRunner

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
        scripts = ScriptRunner(client)
        self._check = scripts.bind(live_scripts.load_standalone("breaker_check"))
        self._record = scripts.bind(live_scripts.load_standalone("breaker_record"))

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
