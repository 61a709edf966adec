"""The Celery task that runs one V2 task: claim it, call V1, record how it ended.

The message carries only the task id and a dispatch number; the request itself (user
text) stays in Redis/SQL, so it never shows in Celery's arguments, Flower or logs.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import gevent
import redis
from celery import shared_task
from celery.worker import state as worker_state
from greenlet import GreenletExit

from taskrecord import keys, settled_messages
from taskrecord.live import ClaimResult, FinalizeResult, claim_result, text
from taskrecord.record import TaskRecord
from taskrecord.sql_pending import remember
from taskrecord.states import TaskState
from tasks.errors import (
    LeaseLost,
    TaskCancelled,
    TaskRunError,
    TaskTimeLimit,
    V1RateLimited,
    V1ServerError,
    V1StreamError,
    V1Timeout,
    V1Unreachable,
)
from tasks.process import get_runtime
from tasks.progress import ProgressEmitter
from tasks.runtime import WorkerRuntime
from tasks.supervision import RunningTask

log = logging.getLogger(__name__)
T = TypeVar("T")

# Failures that say V1 itself is unwell (they count towards opening the breaker).
BREAKER_FAILURES = (V1Unreachable, V1ServerError, V1Timeout, V1RateLimited, V1StreamError)

# How long a claim or a finish waits for an unreachable Redis (a restart, a Sentinel
# failover) before it gives up.
REDIS_WAIT_SECONDS = 60.0
REDIS_RETRY_PAUSE_MAX = 0.5  # between tries (one connection attempt each: cheap)

WORKER_LOST_AFTER_OUTPUT = {
    "type": "worker_lost",
    "message": "the worker running this task died after V1 had started streaming its answer; "
    "it was not re-run automatically because the agent may already have acted. Retry it "
    "with POST /v1/tasks/{id}/retry.",
}


@shared_task(  # type: ignore[untyped-decorator]
    name="openclaw.run", bind=True, ignore_result=True, Request="tasks.run_request:RunRequest"
)
def run_task(self: Any, task_id: str, dispatch_no: str = "") -> str:
    runtime = get_runtime(self.app)
    worker = str(self.request.hostname or "worker")
    delivery_tag = str(getattr(self.request, "delivery_tag", "") or "")
    return execute(runtime, task_id, dispatch_no, worker, delivery_tag)


def execute(
    runtime: WorkerRuntime, task_id: str, dispatch_no: str, worker: str, delivery_tag: str = ""
) -> str:
    """`delivery_tag`: the message's (tasks.run_request), whose kombu `unacked` record the
    claim removes; '' = none (a call not from a worker's message)."""
    token = uuid.uuid4().hex
    live = runtime.live
    call = live.calls.claim(
        task_id, worker, runtime.settings.lease_seconds, token, dispatch_no, delivery_tag
    )

    def claim_once() -> ClaimResult | None:
        if not wait_for_breaker(runtime, task_id):
            return None
        claimed = claim_result(live.run(call))
        settled_messages.mark(delivery_tag)  # its ack needs no Redis call now
        return claimed

    # This message is the task's only one: if Redis is away (a restart) when it is claimed,
    # wait for Redis rather than let the message be acked with nothing done. A claim that
    # ran but whose answer was lost answers `duplicate` when asked again; its lease then
    # runs out and maintenance re-queues the task (no output yet).
    claim = _waiting_out_redis(task_id, "claim", claim_once)
    if claim is None:
        return "not_queued"
    if claim.outcome == "lost_after_output":
        finish(
            runtime, task_id, TaskState.FAILED, error=WORKER_LOST_AFTER_OUTPUT, detail="worker lost"
        )
        return TaskState.FAILED
    if claim.outcome == "cancel_requested":
        finish(runtime, task_id, TaskState.CANCELLED, reason="cancelled by request")
        return TaskState.CANCELLED
    if claim.outcome != "claimed":
        # wait_session / wait_capacity / paused: parked, woken later with a new message.
        # terminal / stale / duplicate / missing: a redelivered or superseded message.
        log.info("task %s not run: %s", task_id, claim.outcome)
        return claim.outcome
    fields = claim.fields
    record = TaskRecord.from_hash(fields)
    # Best-effort: SQL being away must not stop the run (maintenance copies it later).
    # Queued, not waited for: V1 is called at once; the end's copy lands after it.
    runtime.sql_writer.hold(task_id, record, f"attempt on {worker}")
    return _run_claimed(runtime, task_id, token, fields, record)


def _run_claimed(
    runtime: WorkerRuntime, task_id: str, token: str, fields: dict[str, str], record: TaskRecord
) -> str:
    settings = runtime.settings
    live = runtime.live
    # A manual retry starts a fresh round of automatic retries.
    attempts = record.attempts_since_retry
    deadline, promote_to = attempt_deadlines(fields, settings, time.time())
    running = RunningTask(task_id, token, gevent.getcurrent(), deadline, promote_to)
    runtime.supervisor.add(running)
    progress = ProgressEmitter(live, task_id, token, settings.progress_interval, running.stop)
    try:
        turn = runtime.conversations.plan(task_id, fields)
        with running.interruptible():
            result = runtime.v1.chat(
                agent_id=record.agent_id,
                messages=turn.messages,
                user=turn.user,
                on_answered=lambda: runtime.conversations.accepted(task_id, fields, turn),
                on_delta=progress.add,
            )
        # Finish first: it frees the V1 slot and wakes the next task; the breaker can wait.
        # The text not yet sent as progress goes with the end, in the same script.
        ended = finish(runtime, task_id, TaskState.SUCCEEDED, token=token,
                       result=result.as_dict(), output=progress.take())  # fmt: skip
        runtime.breaker.record(ok=True)
        if not ended:
            log.warning("task %s: lease lost, another attempt owns it", task_id)
            return "lease_lost"
        return TaskState.SUCCEEDED
    except TaskCancelled as exc:
        finish(runtime, task_id, TaskState.CANCELLED, token=token, reason=exc.message,
               output=progress.take())  # fmt: skip
        return TaskState.CANCELLED
    except TaskTimeLimit:
        reason = f"ran past its time limit ({time_limit_text(fields, settings)})"
        finish(runtime, task_id, TaskState.TIMED_OUT, token=token, reason=reason,
               output=progress.take())  # fmt: skip
        return TaskState.TIMED_OUT
    except LeaseLost:
        log.warning("task %s: lease lost, another attempt owns it", task_id)
        return "lease_lost"
    except TaskRunError as exc:
        if isinstance(exc, BREAKER_FAILURES):
            runtime.breaker.record(ok=False)
        if runtime.policy.should_retry(exc, attempts):
            _flush_quietly(progress)  # the re-queue's script takes no output
            delay = runtime.policy.delay(attempts)
            requeue(runtime, task_id, token, delay, exc.as_dict(), record.queue)
            return "retrying"
        finish(runtime, task_id, TaskState.FAILED, token=token, error=exc.as_dict(),
               output=progress.take())  # fmt: skip
        return TaskState.FAILED
    except GreenletExit:
        # `celery control terminate` (gevent pool kills the greenlet), or a cold shutdown.
        if worker_state.should_stop or worker_state.should_terminate:
            # Cold shutdown: leave the lease to expire; maintenance re-dispatches the task.
            raise
        finish(
            runtime, task_id, TaskState.CANCELLED, token=token, reason="terminated by an operator"
        )
        return TaskState.CANCELLED
    finally:
        progress.close()
        runtime.supervisor.remove(task_id)


def wait_for_breaker(runtime: WorkerRuntime, task_id: str) -> bool:
    """Hold a fetched task while V1's breaker is open. False: it is no longer queued."""
    while True:
        verdict = runtime.breaker.check()
        if verdict.allowed:
            return True
        if text(runtime.redis.hget(keys.task_key(task_id), "state") or b"") != TaskState.QUEUED:
            return False
        # Held by a live worker: maintenance must not take its message back meanwhile (if
        # this worker dies, the mark lapses and the message is restored).
        pause = min(max(verdict.retry_at - time.time(), 0.2), 5.0)
        held_until = time.time() + pause + 1.5
        runtime.redis.hset(keys.task_key(task_id), "held_until", f"{held_until:.3f}")
        gevent.sleep(pause + random.uniform(0, 0.5))


def _flush_quietly(progress: ProgressEmitter) -> None:
    with contextlib.suppress(TaskRunError):
        progress.flush()


def attempt_deadlines(
    fields: dict[str, str], settings: Any, now: float
) -> tuple[float, float | None]:
    """When this attempt must end, and the later end granted once by a promotion."""
    # A scheduled task's absolute limit counts from when it was due.
    since = max(float(fields["created_at"]), float(fields.get("scheduled_for") or 0))
    absolute = since + settings.absolute_time_limit
    client_limit = float(fields["timeout_seconds"]) if fields.get("timeout_seconds") else None
    short_tier = fields.get("tier") == "short" and fields.get("promoted") != "1"
    tier_limit = settings.short_time_limit if short_tier else settings.long_time_limit
    limit = min(tier_limit, client_limit) if client_limit else tier_limit
    deadline = min(now + limit, absolute)
    promote_to = None
    if short_tier and (client_limit is None or client_limit > tier_limit):
        # A misjudged estimate should not cost the user the run: extend once, in place.
        long_limit = min(settings.long_time_limit, client_limit or settings.long_time_limit)
        promote_to = min(now + long_limit, absolute)
    return deadline, promote_to


def time_limit_text(fields: dict[str, str], settings: Any) -> str:
    if fields.get("timeout_seconds"):
        return f"timeout_seconds={fields['timeout_seconds']} or the tier limit"
    long_tier = fields.get("tier") == "long" or fields.get("promoted") == "1"
    limit = settings.long_time_limit if long_tier else settings.short_time_limit
    return f"tier limit {limit}s"


def finish(
    runtime: WorkerRuntime,
    task_id: str,
    state: str,
    *,
    token: str = "",
    result: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    reason: str = "",
    detail: str | None = None,
    output: tuple[str, int] = ("", 0),
) -> bool:
    """End the task; `output`: the attempt's text not yet sent as progress and the bytes
    sent before it (`ProgressEmitter.take`). False: it was not this call's to end."""
    tries = 0

    def finish_once() -> FinalizeResult:
        nonlocal tries
        tries += 1
        return runtime.control.finish(task_id, state, token=token, result=result,
                                      error=error, reason=reason, detail=detail,
                                      output=output[0], sent=output[1])  # fmt: skip

    # The run's end is in hand: wait for Redis rather than lose it to a failover. Its lease
    # may run out meanwhile; then the script refuses this end and maintenance's stands.
    outcome = _waiting_out_redis(task_id, "finish", finish_once)
    ended_earlier = tries > 1 and outcome.code == 0 and outcome.detail == state
    if ended_earlier:
        # An earlier try ended it and only its answer was lost, so no SQL copy was made
        # here: maintenance copies the live record (taskrecord.sql_pending).
        remember(runtime.redis, task_id)
    return outcome.ended or ended_earlier


def _waiting_out_redis(task_id: str, what: str, call: Callable[[], T]) -> T:
    """`call()`, made again while Redis does not answer, for up to REDIS_WAIT_SECONDS."""
    deadline, pause = time.monotonic() + REDIS_WAIT_SECONDS, 0.1
    while True:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError):
            if time.monotonic() > deadline:
                raise
            log.warning("task %s: Redis unreachable at %s; trying again", task_id, what)
            gevent.sleep(pause)
            # Soon after Redis is back, as its lease keeps running out meanwhile.
            pause = min(pause * 2, REDIS_RETRY_PAUSE_MAX)


def requeue(
    runtime: WorkerRuntime,
    task_id: str,
    token: str,
    delay: float,
    error: dict[str, Any],
    queue: str,
) -> None:
    """Back to `queued`; maintenance publishes it once `delay` has passed."""
    detail = f"retry in {delay:.1f}s after {error.get('type')}"
    runtime.control.requeue(task_id, token, delay, error, queue, detail)
