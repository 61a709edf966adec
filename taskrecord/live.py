"""The live task record in Redis: one hash per task plus its event stream.

The same Lua scripts (`taskrecord.live_scripts`) serve the gateway (asyncio Redis client) and the
workers (sync client under gevent). Each operation is first described as a `ScriptCall`
(pure, shared), then run by `LiveStore` or `AsyncLiveStore`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis

from taskrecord import keys, live_scripts
from taskrecord.estimator import EWMA_WEIGHT
from taskrecord.live_scripts import ScriptRunner
from taskrecord.script_batch import ScriptBatcher
from taskrecord.settings import Settings
from taskrecord.states import TaskState

Arg = str | int | float


@dataclass(frozen=True)
class ScriptCall:
    source: str
    keys: Sequence[str]
    args: Sequence[Arg]


@dataclass(frozen=True)
class TenantQuota:
    """The limits CREATE checks for the submitting tenant (defaults: none)."""

    tenant: str
    max_queued: int = 2**31
    rate_per_second: float = 0.0
    burst: int = 1


@dataclass(frozen=True)
class CreateResult:
    outcome: str  # 1 accepted, 0 the id exists, or busy:/full:/tenant_full:/rate:<detail>
    to_cancel: list[str]  # tasks of its conversation it interrupts or replaces (marked)


@dataclass(frozen=True)
class ClaimResult:
    outcome: str  # claimed, missing, terminal, stale, paused, duplicate, wait_session...
    fields: dict[str, str]


@dataclass(frozen=True)
class FinalizeResult:
    ended: bool  # True when this call ended the task
    code: int  # 1 ended, 0 already ended / missing, -1 other attempt owns it, -2 wrong state
    detail: str  # the partial output when ended, else the state found
    woken: list[str]  # parked tasks woken (their messages already pushed)
    fields: dict[str, str]  # the task's hash after the change (empty when nothing changed)


@dataclass(frozen=True)
class Answer:
    """What a changing script answers: `{outcome..., #woken, woken..., hash...}`."""

    outcome: str
    woken: list[str]
    fields: dict[str, str]


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def pairs(flat: Sequence[Any]) -> dict[str, str]:
    items = [text(v) for v in flat]
    return dict(zip(items[0::2], items[1::2], strict=True))


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def score_arg(score: float | None) -> str:
    """An SQL_PENDING score as scripts take it ('' = none). The entry a script adds and the
    one its copier later drops must be the same double, so both sides format it here."""
    return "" if score is None else f"{score:.6f}"


def budget_name(v1_url: str | None) -> str:
    """V1's capacity budget is per V1 gateway (URL)."""
    return hashlib.sha256((v1_url or "").encode()).hexdigest()[:12]


class LiveCalls:
    """Builds the script calls for one deployment's settings."""

    def __init__(self, settings: Settings) -> None:
        self.maxlen = settings.event_log_maxlen
        self.result_ttl = settings.result_ttl
        self.slot_limit = settings.v1_max_concurrency
        self.budget = budget_name(settings.v1_url)
        self.absolute_limit = settings.absolute_time_limit
        # A live task (queued for up to the absolute limit) must outlive that limit.
        self.live_ttl = settings.absolute_time_limit + 86_400

    def _call(self, source: str, task_id: str, *args: Arg) -> ScriptCall:
        return ScriptCall(
            source,
            [keys.task_key(task_id)],
            [task_id, self.maxlen, self.slot_limit, self.budget, *args],
        )

    def create(
        self,
        task_id: str,
        fields: Mapping[str, Arg],
        queued_data: Mapping[str, Any],
        deadline: float,
        queue: str,
        queue_limit: int,
        message: str,
        quota: TenantQuota | None = None,
        *,
        if_busy: str = "",
        due_at: float = 0.0,
    ) -> ScriptCall:
        """`quota` None: no tenant limit applies (a manual retry rebuilding a record).
        `if_busy`: what to do when the task's conversation has live tasks ('' or `enqueue`,
        `reject`, `interrupt`, `replace_queued`); `due_at` (unix s): when a scheduled task
        is due (0: now); its `deadline` should count from then. `message`: the task's queue
        message (`taskrecord.message.run_message`), rendered by the caller: a submit's cost
        stays in the gateway, not in Valkey, which serves every process."""
        quota = quota or TenantQuota(str(fields.get("tenant", "")))
        flat: list[Arg] = []
        for name, value in fields.items():
            flat.extend((name, value))
        return self._call(live_scripts.CREATE, task_id, self.live_ttl, dumps(queued_data),
                          deadline, queue, queue_limit, message, quota.tenant,
                          quota.max_queued, quota.rate_per_second, quota.burst, if_busy,
                          f"{due_at:.6f}", *flat)  # fmt: skip

    def claim(
        self,
        task_id: str,
        worker: str,
        lease: float,
        token: str,
        dispatch: str,
        delivery_tag: str = "",
    ) -> ScriptCall:
        """`delivery_tag`: the fetched message's, whose kombu `unacked` record goes (claim.lua)."""
        return self._call(live_scripts.CLAIM, task_id, worker, lease, token, dispatch,
                          delivery_tag)  # fmt: skip

    def renew_many(self, tasks: Sequence[tuple[str, str]], lease: float) -> ScriptCall:
        """Renew the leases of running tasks (task id, attempt token): one answer per task, in
        order (`renew_many.lua`)."""
        return ScriptCall(
            live_scripts.RENEW_MANY,
            [keys.task_key(task_id) for task_id, _token in tasks],
            ["-", self.maxlen, self.slot_limit, self.budget, lease,
             *(token for _task_id, token in tasks)],
        )  # fmt: skip

    def progress(self, task_id: str, token: str, delta: str, sent: int = 0) -> ScriptCall:
        """`sent`: bytes (UTF-8) of this attempt's output already appended before `delta`."""
        return self._call(live_scripts.PROGRESS, task_id, token, delta,
                          dumps({"delta": delta}), self.live_ttl, sent)  # fmt: skip

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
        sql_due: float | None = None,
        output: str = "",
        sent: int = 0,
    ) -> ScriptCall:
        """`sql_due`: the caller copies the end to SQL without waiting; until that copy
        lands the task stays in SQL_PENDING, due then. `output`: the running attempt's
        last text not yet sent as progress (`sent` bytes were), appended first, as
        `progress` would (finalize.lua)."""
        if error is None and state in (TaskState.CANCELLED, TaskState.TIMED_OUT):
            error = {"type": state, "message": reason or state}
        data = dumps({"delta": output}) if output else ""
        return self._call(live_scripts.FINALIZE, task_id, token, state, dumps(result or {}),
                          dumps(error or {}), reason, self.result_ttl, only_from,
                          EWMA_WEIGHT, score_arg(sql_due), output, data, sent)  # fmt: skip

    def requeue(
        self, task_id: str, token: str, delay: float, error: Mapping[str, Any], queue: str
    ) -> ScriptCall:
        return self._call(live_scripts.REQUEUE, task_id, token, f"{delay:.3f}", dumps(error),
                          queue)  # fmt: skip

    def cancel(self, task_id: str, reason: str, sql_due: float | None = None) -> ScriptCall:
        """`sql_due`: as `finalize`'s, for a task this call ends (queued or paused)."""
        return self._call(live_scripts.CANCEL, task_id, reason, self.result_ttl,
                          score_arg(sql_due))  # fmt: skip

    def recover(self, task_id: str, fence_token: str) -> ScriptCall:
        return self._call(live_scripts.RECOVER, task_id, fence_token)

    def pause(self, task_id: str) -> ScriptCall:
        return self._call(live_scripts.PAUSE, task_id)

    def resume(self, task_id: str) -> ScriptCall:
        return self._call(live_scripts.RESUME, task_id)

    def retry(self, task_id: str, now: float, reason: str) -> ScriptCall:
        return self._call(live_scripts.RETRY, task_id, self.live_ttl, now + self.absolute_limit,
                          reason)  # fmt: skip

    def restore_orphan(
        self, task_id: str, delivery_tag: str, dispatch: str, queue: str, message: str
    ) -> ScriptCall:
        return self._call(live_scripts.RESTORE_ORPHAN, task_id, delivery_tag, dispatch, queue,
                          message)  # fmt: skip

    def take_due(self, task_id: str) -> ScriptCall:
        return self._call(live_scripts.TAKE_DUE, task_id)

    def wake_waiting(self) -> ScriptCall:
        """Per V1 budget, not per task: the task id is a placeholder."""
        return self._call(live_scripts.WAKE_WAITING, "-")


def create_result(raw: Any) -> CreateResult:
    """CREATE answers 1, 0 or a refusal, or {1, ids to cancel...} (see create.lua)."""
    if isinstance(raw, list):
        return CreateResult(text(raw[0]), [text(v) for v in raw[1:]])
    return CreateResult(text(raw), [])


def claim_result(raw: Sequence[Any]) -> ClaimResult:
    outcome = text(raw[0])
    return ClaimResult(outcome, pairs(raw[1:]) if outcome == "claimed" else {})


def _woken_and_fields(rest: Sequence[Any]) -> tuple[list[str], dict[str, str]]:
    if not rest:
        return [], {}
    count = int(rest[0])
    return [text(v) for v in rest[1 : 1 + count]], pairs(rest[1 + count :])


def finalize_result(raw: Sequence[Any]) -> FinalizeResult:
    code = int(raw[0])
    woken, fields = _woken_and_fields(raw[2:])
    return FinalizeResult(code == 1, code, text(raw[1]), woken, fields)


def script_answer(raw: Sequence[Any]) -> Answer:
    """For scripts answering {outcome, #woken, woken ids..., hash...} (cancel, requeue)."""
    woken, fields = _woken_and_fields(raw[1:])
    return Answer(text(raw[0]), woken, fields)


class LiveStore:
    """Synchronous runner of live-record scripts (workers, CLI, maintenance)."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.redis = client
        self.calls = LiveCalls(settings)
        self.scripts = ScriptRunner(client)

    def run(self, call: ScriptCall, pipeline: Any = None) -> Any:
        """Run the call now, or queue it on `pipeline`."""
        return self.scripts.run(call.source, call.keys, call.args, client=pipeline)

    def get(self, task_id: str) -> dict[str, str]:
        return pairs(_flatten(self.redis.hgetall(keys.task_key(task_id))))


class AsyncLiveStore:
    """Asynchronous runner of the same scripts (the gateway): calls made in the same
    event-loop turn share a round trip (`taskrecord.script_batch`)."""

    def __init__(self, client: aioredis.Redis, settings: Settings) -> None:
        self.redis = client
        self.calls = LiveCalls(settings)
        self.batcher = ScriptBatcher(client)

    async def run(self, call: ScriptCall) -> Any:
        return await self.batcher.run(call.source, call.keys, call.args)


def _flatten(mapping: Mapping[Any, Any]) -> list[Any]:
    flat: list[Any] = []
    for name, value in mapping.items():
        flat.extend((name, value))
    return flat
