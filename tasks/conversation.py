"""Which V1 session a task's turn runs in, and what V1 must be sent.

Two rules, both about V1's stored conversations (`v1-contract.md`: `user` names a stable,
agent-scoped session whose transcript V1 keeps):

- **Tenant isolation.** V1's session name is an HMAC of (tenant, session_id, generation)
  under `V1_SESSION_SECRET`: two tenants with the same `session_id` never share a V1
  session, and no tenant can name or guess another's.
- **A message is never sent twice into one V1 session.** V1 records the user's message as
  soon as it accepts the run (HTTP 200). When a later attempt of the same task must send it
  again (an automatic retry after an error inside the stream, a manual retry, a re-run
  after a lost worker), the conversation moves to a fresh V1 session (its *generation* goes
  up) and that first call carries the conversation's earlier succeeded turns, newest last,
  within `V1_HISTORY_MAX_CHARS`. V1 then holds the history without the failed turn, and
  the turns after it stay in the new session.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis

from taskrecord import keys
from taskrecord.settings import Settings
from taskrecord.store.repo import TaskStore

# Task hash field: "1" once V1 accepted (HTTP 200) a call of the current attempt.
V1_ACCEPTED = "v1_accepted"
HISTORY_TURNS = 200


def v1_user(secret: str, tenant: str, session_id: str, generation: int) -> str:
    """V1's `user` for one conversation generation: stable, tenant-scoped, unguessable."""
    message = f"{tenant}\x00{session_id}\x00{generation}".encode()
    return "v2-" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:40]


@dataclass(frozen=True)
class Turn:
    """What one attempt sends to V1."""

    user: str | None  # V1 session name; None: a one-off session (no session_id)
    messages: list[dict[str, Any]]
    seeded: bool  # earlier turns were prepended to seed a fresh V1 session


class Conversations:
    """Per worker process: plans each turn and records what V1 accepted."""

    def __init__(
        self,
        client: redis.Redis,
        store: TaskStore,
        settings: Settings,
        blocking: Callable[..., Any],
    ) -> None:
        self.redis = client
        self.store = store
        self.secret = settings.v1_session_secret.get_secret_value()
        self.max_chars = settings.v1_history_max_chars
        self.ttl = max(settings.retention_days, 1) * 86_400
        self.blocking = blocking

    def plan(self, task_id: str, fields: dict[str, str]) -> Turn:
        messages: list[dict[str, Any]] = list(_request(fields)["messages"])
        session_id = fields.get("session_id") or ""
        if not session_id:
            return Turn(None, messages, False)
        tenant, agent = fields.get("tenant", ""), fields["agent_id"]
        conv = keys.conversation_key(tenant, agent, session_id)
        pipe = self.redis.pipeline(transaction=True)
        if fields.get(V1_ACCEPTED) == "1":
            # An earlier attempt's message is in V1's transcript: start a new generation.
            # (A conversation runs one task at a time, so nothing races this.)
            pipe.hincrby(conv, "epoch", 1)
            pipe.hset(conv, "seed", "1")
            pipe.hset(keys.task_key(task_id), V1_ACCEPTED, "0")
        pipe.hmget(conv, "epoch", "seed")
        pipe.expire(conv, self.ttl)
        epoch_raw, seed_raw = pipe.execute()[-2]
        epoch = int(epoch_raw or 0)
        seeded = seed_raw == b"1"
        if seeded:
            created = datetime.fromtimestamp(float(fields["created_at"])).astimezone()
            history = self.blocking(self._history, tenant, agent, session_id, created)
            messages = history + messages
        return Turn(v1_user(self.secret, tenant, session_id, epoch), messages, seeded)

    def accepted(self, task_id: str, fields: dict[str, str], turn: Turn) -> None:
        """V1 answered 200: the message is now in its transcript (and so is the seed)."""
        if turn.user is None:
            return  # no session: only a session's next plan() reads the mark
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(keys.task_key(task_id), V1_ACCEPTED, "1")
        if turn.seeded:
            conv = keys.conversation_key(
                fields.get("tenant", ""), fields["agent_id"], fields.get("session_id") or ""
            )
            pipe.hset(conv, "seed", "0")
        pipe.execute()

    def _history(
        self, tenant: str, agent: str, session_id: str, before: datetime
    ) -> list[dict[str, Any]]:
        rows = self.store.conversation(
            tenant, agent, session_id, before=before, limit=HISTORY_TURNS
        )
        turns: list[list[dict[str, Any]]] = []
        budget = self.max_chars
        for row in reversed(rows):  # newest first, until the budget runs out
            answer = str((row.result or {}).get("content") or "")
            asked = row.request.get("messages")
            turn = [
                *(asked if isinstance(asked, list) else []),
                {"role": "assistant", "content": answer},
            ]
            size = sum(len(str(m.get("content") or "")) for m in turn)
            if size > budget:
                break
            budget -= size
            turns.append(turn)
        return [message for turn in reversed(turns) for message in turn]


def _request(fields: dict[str, str]) -> dict[str, Any]:
    request: dict[str, Any] = json.loads(fields["request"])
    return request
