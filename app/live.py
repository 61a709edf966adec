"""The live task record in Redis: one hash per task plus its event stream.

The same Lua scripts serve the gateway (asyncio Redis client) and the workers (sync client
under gevent). Each operation is first described as a `ScriptCall` (pure, shared), then run
by `LiveStore` or `AsyncLiveStore`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from app import keys, live_scripts
from app.settings import Settings

Arg = str | int | float
# Seconds a publisher has to confirm a new task's publish before maintenance does it.
PUBLISH_GRACE = 30


@dataclass(frozen=True)
class ScriptCall:
    source: str
    keys: Sequence[str]
    args: Sequence[Arg]


@dataclass(frozen=True)
class ClaimResult:
    outcome: str  # claimed, missing, terminal, stale, paused, duplicate, lost_after_output...
    fields: dict[str, str]


@dataclass(frozen=True)
class FinalizeResult:
    ended: bool  # True when this call ended the task
    code: int  # 1 ended, 0 already ended / missing, -1 other attempt owns it, -2 wrong state
    detail: str  # the partial output when ended, else the state found


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def pairs(flat: Sequence[Any]) -> dict[str, str]:
    items = [text(v) for v in flat]
    return dict(zip(items[0::2], items[1::2], strict=True))


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


class LiveCalls:
    """Builds the script calls for one deployment's settings."""

    def __init__(self, settings: Settings) -> None:
        self.maxlen = settings.event_log_maxlen
        self.result_ttl = settings.result_ttl
        # A live task (queued for up to the absolute limit) must outlive that limit.
        self.live_ttl = settings.absolute_time_limit + 86_400

    def create(
        self,
        task_id: str,
        fields: Mapping[str, Arg],
        queued_data: Mapping[str, Any],
        deadline: float,
    ) -> ScriptCall:
        flat: list[Arg] = []
        for name, value in fields.items():
            flat.extend((name, value))
        return ScriptCall(
            live_scripts.CREATE,
            [keys.task_key(task_id), keys.events_key(task_id), keys.DEADLINES, keys.DISPATCH_DUE],
            [
                task_id,
                self.live_ttl,
                self.maxlen,
                keys.EVENTS_CHANNEL,
                dumps(queued_data),
                deadline,
                PUBLISH_GRACE,
                *flat,
            ],
        )

    def claim(
        self, task_id: str, worker: str, lease: float, token: str, dispatch: str
    ) -> ScriptCall:
        return ScriptCall(
            live_scripts.CLAIM,
            [keys.task_key(task_id), keys.events_key(task_id), keys.LEASES],
            [task_id, worker, lease, token, dispatch, self.maxlen, keys.EVENTS_CHANNEL],
        )

    def renew(self, task_id: str, token: str, lease: float) -> ScriptCall:
        return ScriptCall(
            live_scripts.RENEW, [keys.task_key(task_id), keys.LEASES], [task_id, token, lease]
        )

    def mark_answered(self, task_id: str, token: str) -> ScriptCall:
        return ScriptCall(live_scripts.MARK_ANSWERED, [keys.task_key(task_id)], [token])

    def progress(self, task_id: str, token: str, delta: str) -> ScriptCall:
        return ScriptCall(
            live_scripts.PROGRESS,
            [keys.task_key(task_id), keys.events_key(task_id), keys.partial_key(task_id)],
            [
                task_id,
                token,
                delta,
                dumps({"delta": delta}),
                self.maxlen,
                keys.EVENTS_CHANNEL,
                self.live_ttl,
            ],
        )

    def finalize(
        self,
        task_id: str,
        state: str,
        *,
        token: str = "",
        result: Mapping[str, Any] | None = None,
        error: Mapping[str, Any] | None = None,
        reason: str = "",
        only_from: str = "",
    ) -> ScriptCall:
        if error is None and state in ("cancelled", "timed_out"):
            error = {"type": state, "message": reason or state}
        return ScriptCall(
            live_scripts.FINALIZE,
            [
                keys.task_key(task_id),
                keys.events_key(task_id),
                keys.partial_key(task_id),
                keys.LEASES,
                keys.DEADLINES,
                keys.DISPATCH_DUE,
            ],
            [
                task_id,
                token,
                state,
                dumps(result or {}),
                dumps(error or {}),
                reason,
                self.result_ttl,
                self.maxlen,
                keys.EVENTS_CHANNEL,
                only_from,
            ],
        )

    def requeue(
        self, task_id: str, token: str, delay: float, error: Mapping[str, Any], queue: str
    ) -> ScriptCall:
        return ScriptCall(
            live_scripts.REQUEUE,
            [
                keys.task_key(task_id),
                keys.events_key(task_id),
                keys.LEASES,
                keys.partial_key(task_id),
                keys.DISPATCH_DUE,
            ],
            [task_id, token, f"{delay:.3f}", dumps(error), self.maxlen, keys.EVENTS_CHANNEL, queue],
        )

    def cancel(self, task_id: str, reason: str) -> ScriptCall:
        return ScriptCall(
            live_scripts.CANCEL,
            [
                keys.task_key(task_id),
                keys.events_key(task_id),
                keys.partial_key(task_id),
                keys.LEASES,
                keys.DEADLINES,
                keys.DISPATCH_DUE,
            ],
            [
                task_id,
                reason,
                self.result_ttl,
                self.maxlen,
                keys.EVENTS_CHANNEL,
                keys.CONTROL_CHANNEL,
            ],
        )


def recover_call(task_id: str, fence_token: str) -> ScriptCall:
    return ScriptCall(
        live_scripts.RECOVER, [keys.task_key(task_id), keys.LEASES], [task_id, fence_token]
    )


def claim_result(raw: Sequence[Any]) -> ClaimResult:
    outcome = text(raw[0])
    return ClaimResult(outcome, pairs(raw[1:]) if outcome == "claimed" else {})


def finalize_result(raw: Sequence[Any]) -> FinalizeResult:
    code = int(raw[0])
    return FinalizeResult(code == 1, code, text(raw[1]))


class LiveStore:
    """Synchronous runner of live-record scripts (workers, CLI, maintenance)."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.calls = LiveCalls(settings)
        self._scripts: dict[str, Any] = {}

    def run(self, call: ScriptCall) -> Any:
        script = self._scripts.get(call.source)
        if script is None:
            script = self._scripts[call.source] = self.redis.register_script(call.source)
        return script(keys=list(call.keys), args=list(call.args))

    def get(self, task_id: str) -> dict[str, str]:
        return pairs(_flatten(self.redis.hgetall(keys.task_key(task_id))))

    def partial(self, task_id: str) -> str:
        value = self.redis.get(keys.partial_key(task_id))
        return text(value) if value is not None else ""


class AsyncLiveStore:
    """Asynchronous runner of the same scripts (the gateway)."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.redis = client
        self.calls = LiveCalls(settings)
        self._scripts: dict[str, Any] = {}

    async def run(self, call: ScriptCall) -> Any:
        script = self._scripts.get(call.source)
        if script is None:
            script = self._scripts[call.source] = self.redis.register_script(call.source)
        return await script(keys=list(call.keys), args=list(call.args))

    async def get(self, task_id: str) -> dict[str, str]:
        return pairs(_flatten(await self.redis.hgetall(keys.task_key(task_id))))

    async def partial(self, task_id: str) -> str:
        value = await self.redis.get(keys.partial_key(task_id))
        return text(value) if value is not None else ""


def _flatten(mapping: Mapping[Any, Any]) -> list[Any]:
    flat: list[Any] = []
    for name, value in mapping.items():
        flat.extend((name, value))
    return flat
