"""A new task's live record and the CREATE call that records and queues it, for every path
that makes one: `POST /v1/tasks` (`app/submit.py`) and a schedule's firing
(`tasks/schedule_sweep.py`). Pure: callers validate, estimate and run the call, so both
paths make the same record under the same quotas.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis

from taskrecord import keys
from taskrecord.estimator import MIN_SAMPLES, Estimate, heuristic_seconds
from taskrecord.live import LiveCalls, ScriptCall, TenantQuota, dumps, text
from taskrecord.message import run_message
from taskrecord.record import TaskRecord
from taskrecord.routing import choose_queue, choose_tier
from taskrecord.settings import Settings
from taskrecord.states import TaskState
from taskrecord.tenants import TenantPolicy


@dataclass(frozen=True)
class TaskSpec:
    """What a new task asks for, already validated (by the gateway's request model, or
    when its schedule was created)."""

    messages: list[dict[str, str]]
    agent_id: str
    session_id: str  # '' for none
    priority: int
    estimated_seconds: float | None
    timeout_seconds: int | None
    metadata: Mapping[str, Any] | None
    webhook_url: str  # '' for none

    @classmethod
    def from_body(
        cls,
        settings: Settings,
        tenant: str,
        body: Mapping[str, Any],
        extra_metadata: Mapping[str, Any] | None = None,
    ) -> TaskSpec:
        """From a `POST /v1/tasks` body as JSON (a schedule's stored copy), resolving the
        defaults a submit resolves: the agent, the tenant's webhook."""
        messages = body.get("messages") or [{"role": "user", "content": body.get("message", "")}]
        webhook = body.get("webhook_url")
        if webhook is None:
            webhook = settings.webhook_default_urls.get(tenant, "")
        metadata = {**(body.get("metadata") or {}), **(extra_metadata or {})}
        return cls(
            messages=[{"role": m["role"], "content": m["content"]} for m in messages],
            agent_id=body.get("agent_id") or settings.v1_default_agent,
            session_id=body.get("session_id") or "",
            priority=int(body.get("priority", 5)),
            estimated_seconds=body.get("estimated_seconds"),
            timeout_seconds=body.get("timeout_seconds"),
            metadata=metadata or None,
            webhook_url=webhook,
        )

    def text_chars(self) -> int:
        return sum(len(m["content"]) for m in self.messages)


@dataclass(frozen=True)
class Refusal:
    status: int
    type: str
    message: str
    extra: Mapping[str, Any] = field(default_factory=dict)  # more fields of the error body


def refusal(
    settings: Settings, policy: TenantPolicy, spec: TaskSpec, *, single_message: bool = False
) -> Refusal | None:
    """What the deployment's rules refuse in `spec` (size, priority, agent), else None: the
    one check of a submit and of a schedule's task. `single_message`: the body gave
    `message` rather than `messages` (the error says which)."""
    chars = spec.text_chars()
    if chars > settings.max_message_chars:
        what = "the message has" if single_message else "the messages have together"
        return Refusal(413, "message_too_large", f"{what} {chars} characters; the limit is "
                       f"{settings.max_message_chars} (MAX_MESSAGE_CHARS)")  # fmt: skip
    ceiling = policy.max_priority
    if spec.priority > ceiling:
        return Refusal(422, "priority_not_allowed", f"priority: {spec.priority} is above this "
                       f"tenant's maximum of {ceiling} (TENANT_MAX_PRIORITY; tenants listed "
                       "in PRIORITY_TENANTS may use up to 10)",
                       {"max_priority": ceiling})  # fmt: skip
    if settings.v1_agents and spec.agent_id not in settings.v1_agents:
        return Refusal(422, "unknown_agent", f"unknown agent {spec.agent_id!r}; known: "
                       f"{', '.join(settings.v1_agents)}")  # fmt: skip
    return None


def new_record(
    settings: Settings,
    policy: TenantPolicy,
    spec: TaskSpec,
    task_id: str,
    guess: Estimate,
    now: float,
) -> TaskRecord:
    """The live record of a new, queued task."""
    return TaskRecord(
        id=task_id,
        state=TaskState.QUEUED,
        tenant=policy.tenant,
        queue=choose_queue(spec.priority, guess.seconds, settings),
        tier=choose_tier(guess.seconds, settings),
        priority=spec.priority,
        estimated_seconds=guess.seconds,
        estimate_source=guess.source,
        agent_id=spec.agent_id,
        session_id=spec.session_id or None,
        created_at=now,
        attempts=0,
        dispatch=1,
        # The scheduler reads these when it hands out V1 slots (fair share, tenant cap).
        weight=policy.weight,
        line=policy.tenant if settings.fair_share else "*",
        max_running=policy.max_running,
        timeout_seconds=spec.timeout_seconds,
        request=dumps({"messages": spec.messages}),
        metadata=dict(spec.metadata) if spec.metadata else None,
        webhook_url=spec.webhook_url,  # its end marks a webhook due (taskrecord/webhooks.py)
    )


def task_fields(
    settings: Settings,
    policy: TenantPolicy,
    spec: TaskSpec,
    task_id: str,
    guess: Estimate,
    now: float,
) -> dict[str, str]:
    """The live record (hash fields) of a new, queued task, as CREATE takes them."""
    return new_record(settings, policy, spec, task_id, guess, now).to_hash()


def create_call(
    calls: LiveCalls, settings: Settings, policy: TenantPolicy, fields: Mapping[str, str]
) -> ScriptCall:
    """CREATE for `fields` (from `task_fields`): checks the queue limit and the tenant's
    quota and rate, records the task and queues it, or refuses with nothing written."""
    task_id, queue = fields["id"], fields["queue"]
    return calls.create(
        task_id, fields, {"queue": queue, "priority": int(fields["priority"])},
        float(fields["created_at"]) + settings.absolute_time_limit, queue, settings.queue_limit,
        run_message(task_id, 1, queue),
        TenantQuota(policy.tenant, policy.max_queued, policy.rate_per_second, policy.burst),
    )  # fmt: skip


def estimate_now(client: redis.Redis, spec: TaskSpec) -> Estimate:
    """The gateway's estimate (`taskrecord.estimator`), read synchronously and uncached."""
    if spec.estimated_seconds is not None:
        return Estimate(float(spec.estimated_seconds), "client")
    n, mean = client.hmget(keys.ESTIMATES, f"{spec.agent_id}:n", f"{spec.agent_id}:mean")
    if n is not None and mean is not None and int(n) >= MIN_SAMPLES:
        return Estimate(round(float(text(mean)), 1), "learned")
    return Estimate(heuristic_seconds(spec.text_chars()), "heuristic")


def outcome_of(raw: Any) -> str:
    """CREATE's answer: '1' accepted, '0' the id exists, else the refusal ('full:...')."""
    return text(raw[0] if isinstance(raw, list) else raw)
