"""Circuit breaker in front of V1, shared by every worker through Redis.

closed -> (BREAKER_THRESHOLD consecutive failures) -> open for BREAKER_COOLDOWN seconds ->
half-open: one probe task is let through; its success closes the breaker, its failure
opens it again. While it is open, workers hold the tasks they fetched (the rest stay in
the queues): queued work waits instead of failing, and no attempt is spent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import redis

from taskrecord import keys, live_scripts
from taskrecord.live import pairs, text
from taskrecord.live_scripts import ScriptRunner

PROBE_KEY = f"{keys.BREAKER}:probe"
# How long a process trusts a `closed` answer without asking Redis again (every task asks
# before its V1 call): a breaker opened by another process holds this one's new tasks at
# most this much later.
CLOSED_FOR_SECONDS = 0.5


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
        # Until when (monotonic) a `closed` answer is trusted, and whether it had no failures.
        self._closed_until = 0.0
        self._clean = False

    def check(self) -> Verdict:
        if time.monotonic() < self._closed_until:
            return Verdict(True)
        raw = [text(v) for v in self._check(keys=[keys.BREAKER, PROBE_KEY],
                                            args=[int(self.cooldown) + 30])]  # fmt: skip
        if raw[0] == "closed":
            self._closed_until = time.monotonic() + CLOSED_FOR_SECONDS
            self._clean = raw[1:2] == ["0"]
            return Verdict(True)
        self._closed_until = 0.0
        if raw[0] == "probe":
            return Verdict(True, probe=True)
        return Verdict(False, retry_at=float(raw[1]))

    def record(self, ok: bool) -> str:
        if ok and self._clean and time.monotonic() < self._closed_until:
            return "closed"  # closed with no failures a moment ago: a success changes nothing
        self._closed_until, self._clean = 0.0, False
        return text(self._record(keys=[keys.BREAKER, PROBE_KEY],
                                 args=[1 if ok else 0, self.threshold, self.cooldown]))  # fmt: skip


def describe(raw: dict[Any, Any]) -> dict[str, str]:
    """The breaker hash as operators see it."""
    fields = pairs([v for pair in raw.items() for v in pair])
    return {"state": fields.get("state", "closed"), **fields}
