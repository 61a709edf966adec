"""Names of every Redis key and channel V2 writes, in one place.

Each key here has a TTL or a bound; the comment says which.
"""

from __future__ import annotations

PREFIX = "v2"

# Pub/sub: nothing is published here; each gateway's event bridge stays subscribed to it
# (its confirmation says the bridge is listening). Events go to the channels below.
EVENTS_CHANNEL = f"{PREFIX}:events"
# Pub/sub: control messages to workers (cancel a running task).
CONTROL_CHANNEL = f"{PREFIX}:control"
# Sorted set task_id -> lease expiry (unix s); bounded by the number of running tasks.
LEASES = f"{PREFIX}:leases"
# Sorted set task_id -> absolute deadline (unix s) of every live task; bounded by the
# number of live tasks (at most the queue limits plus the running ones).
DEADLINES = f"{PREFIX}:deadlines"
# Sorted set task_id -> when it must be handed to Celery (unix s): retries wait here for
# their delay, scheduled runs (`run_at` / `delay_seconds`) until they are due, and woken
# tasks until whoever woke them publishes them (if it dies first, maintenance does).
# Bounded by the number of live tasks.
DISPATCH_DUE = f"{PREFIX}:dispatch-due"
# Sorted set task_id -> submission time of tasks not yet copied into the SQL store (the
# submit path writes Redis only; maintenance copies them in batches). Bounded by the
# number of tasks submitted since the last copy.
UNPERSISTED = f"{PREFIX}:unpersisted"
# Sorted set task_id -> when its SQL copy is due (unix s): at once after a failed write,
# or a grace period after an end whose copy a worker makes without waiting (its script
# adds the entry, the worker drops it once the copy landed). The SQL store is written
# behind the live record, best-effort; maintenance copies each due task's CURRENT live hash
# into SQL until a copy sticks (`taskrecord.sql_pending`). An entry whose live record is
# gone is dropped, so it is bounded by the number of live tasks.
SQL_PENDING = f"{PREFIX}:sql-pending"
# Sorted set of completion webhooks to act on -> when (unix s): `t:<task id>` a task with a
# webhook ended (the end's script adds it; maintenance makes it a delivery), `d:<delivery
# id>` a delivery's next attempt. Bounded by deliveries in flight: each leaves on success,
# or after WEBHOOK_MAX_ATTEMPTS or WEBHOOK_MAX_AGE.
WEBHOOKS_DUE = f"{PREFIX}:webhooks-due"
# Sorted set schedule id -> when maintenance looks at it next (unix s): its due time, or
# until when an instance that claimed it is firing it. Bounded by the number of schedules
# (TENANT_MAX_SCHEDULES per tenant); rebuilt from the SQL store if lost.
SCHEDULES_DUE = f"{PREFIX}:schedules-due"
# String per run queue: the last message the scripts put at its head (publish() in
# prelude.lua: re-runs and woken tasks keep first-come order among themselves); TTL 1 h.
QUEUE_HEAD_LAST = f"{PREFIX}:queue-head-last:"
# Hash: paused queues (operators); bounded by the number of queues.
PAUSED_QUEUES = f"{PREFIX}:paused-queues"
# Hash agent -> learned duration stats; bounded by the number of agents.
ESTIMATES = f"{PREFIX}:estimates"
# Hash: circuit breaker state of V1; one key.
BREAKER = f"{PREFIX}:breaker"


def task_events_channel(task_id: str) -> str:
    """Pub/sub: one task's events (`tenant\\nagent\\nsession\\n<event>`), for the gateways
    whose clients follow it. The live scripts derive the same name."""
    return f"{PREFIX}:ev:t:{task_id}"


def session_events_channel(tenant: str, agent_id: str, session_id: str) -> str:
    """Pub/sub: the events of one conversation's tasks (same payload), for the gateways
    whose clients follow the conversation. The live scripts derive the same name."""
    return f"{PREFIX}:ev:s:{tenant}\n{agent_id}\n{session_id}"


def task_key(task_id: str) -> str:
    """Hash with the live record of one task (TTL: absolute limit while live, result TTL after)."""
    return f"{PREFIX}:task:{task_id}"


def events_key(task_id: str) -> str:
    """Stream with the task's event log (MAXLEN-bounded, same TTL as the task hash)."""
    return f"{PREFIX}:events:{task_id}"


def partial_key(task_id: str) -> str:
    """String with the output streamed so far (same TTL as the task hash)."""
    return f"{PREFIX}:partial:{task_id}"


def idempotency_key(tenant: str, key: str) -> str:
    """String idempotency key -> task id (TTL: result TTL)."""
    return f"{PREFIX}:idem:{tenant}:{key}"


def session_key(tenant: str, agent_id: str, session_id: str) -> str:
    """Sorted set of the live task ids of one conversation (tenant, agent, session) in
    submission order (TTL refreshed on use). The live scripts derive the same name."""
    return f"{PREFIX}:session:{tenant}:{agent_id}:{session_id}"


# How many of a conversation's newest task ids `session_recent_key` keeps.
SESSION_RECENT = 200


def session_recent_key(tenant: str, agent_id: str, session_id: str) -> str:
    """Sorted set of one conversation's newest task ids, live or ended, by creation time (at
    most SESSION_RECENT; the TTL of its newest task's record). Written by the create script;
    a session replay reads it beside SQL, which a task just submitted or just ended may not
    have reached yet (nor any task while SQL is away)."""
    return f"{PREFIX}:session-recent:{tenant}:{agent_id}:{session_id}"


def conversation_key(tenant: str, agent_id: str, session_id: str) -> str:
    """Hash of one conversation's V1 session generation (`epoch`) and whether the next call
    must seed it with earlier turns (`seed`). TTL: the SQL retention, refreshed on use."""
    return f"{PREFIX}:conversation:{tenant}:{agent_id}:{session_id}"


def v1_slots(budget: str) -> str:
    """Sorted set task_id -> lease expiry: V1 runs in flight (bounded by the V1 budget).
    The live scripts derive the same name (`taskrecord.live_scripts`)."""
    return f"{PREFIX}:v1slots:{budget}"


def consumers_key(queue: str) -> str:
    """Sorted set worker name -> until when (ms) it advertises itself as a consumer of
    `queue` (`tasks.consumers`). TTL: a few seconds, refreshed by every advertisement;
    bounded by the number of workers."""
    return f"{PREFIX}:consumers:{queue}"


def recycling_key(queue: str) -> str:
    """String: the worker draining for a recycle while `queue` keeps another consumer.
    TTL: a few seconds, refreshed while it drains."""
    return f"{PREFIX}:recycling:{queue}"


def v1_wait(budget: str) -> str:
    """Sorted set task_id -> rank: tasks waiting for a V1 slot (bounded by live tasks)."""
    return f"{PREFIX}:v1wait:{budget}"
