"""Lua scripts that move a task's live record in Redis from one state to the next.

Every transition and the event it emits happen in one script, so the event log can never
disagree with the state, and a task can never get two terminal events: a script that would
end a task does nothing when the task has already ended.

The same scripts are the scheduler's admission control: a task may run only when it is the
oldest live task of its (tenant, agent, session) and a V1 slot is free. Otherwise it is
*parked* (its Celery message is consumed) and woken, with a fresh dispatch number, when the
task holding it back releases what it held.

The scripts live as `.lua` files beside this module (`taskrecord/lua/`), each with a header
saying its arguments and result; every one is `prelude.lua` + its own body, loaded once.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis

from taskrecord import keys

_FOLDER = resources.files("taskrecord") / "lua"


@cache
def load(name: str) -> str:
    """The full source of one script (`claim`, `finalize`, ...): the prelude, then its body,
    with the key prefix and bounds that Python defines filled in."""
    source = (_FOLDER / "prelude.lua").read_text() + (_FOLDER / f"{name}.lua").read_text()
    return source.replace("{{PREFIX}}", keys.PREFIX).replace(
        "{{SESSION_RECENT}}", str(keys.SESSION_RECENT)
    )


@cache
def load_standalone(name: str) -> str:
    """A script without the transition prelude (breaker, estimator)."""
    return (_FOLDER / f"{name}.lua").read_text()


class ScriptRunner:
    """The one way Lua runs against one synchronous client: each source is registered once
    (EVALSHA, falling back to EVAL after a server restart, as redis-py's Script does)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._scripts: dict[str, Any] = {}

    def bind(self, source: str) -> Any:
        found = self._scripts.get(source)
        if found is None:
            found = self._scripts[source] = self.client.register_script(source)
        return found

    def run(self, source: str, keys: Sequence[str], args: Sequence[Any], client: Any = None) -> Any:
        """Run now, or queue on `client` (a pipeline) when given."""
        return self.bind(source)(keys=list(keys), args=list(args), client=client)


CREATE = load("create")
CLAIM = load("claim")
# Standalone: one member of a due set for one maintenance instance (schedules, webhooks).
CLAIM_DUE = load_standalone("claim_due")
# Standalone: a queued task whose broker message was lost (tasks/lost_messages.py).
REDISPATCH_LOST = load_standalone("redispatch_lost")
# Standalone: a pending SQL copy caught up (taskrecord/sql_pending.py).
FORGET_SQL_PENDING = load_standalone("forget_sql_pending")
RENEW_MANY = load("renew_many")
PROGRESS = load("progress")
FINALIZE = load("finalize")
REQUEUE = load("requeue")
CANCEL = load("cancel")
RECOVER = load("recover")
PAUSE = load("pause")
RESUME = load("resume")
RETRY = load("retry")
TAKE_DUE = load("take_due")
RESTORE_ORPHAN = load("restore_orphan")
WAKE_WAITING = load("wake_waiting")
