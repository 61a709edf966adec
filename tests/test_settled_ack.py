"""A run message's kombu `unacked` record goes with its task's claim (claim.lua), and its ack
then sends nothing to Redis (issue 13: one round trip fewer per task). Watched with Valkey's
MONITOR on the shared system's worker: kombu records the message when it fetches it, the
claim's script removes the record, no client removes it again at the ack, and nothing of
the message is left in `unacked` while the task still runs or after it ended."""

from __future__ import annotations

import threading

import redis

from taskrecord import keys
from taskrecord.live import text
from tests.harness import System, submit, wait_for_state, wait_terminal, wait_until

UNACKED = ("unacked", "unacked_index")


def test_the_claim_settles_the_message_and_its_ack_sends_nothing(
    system: System, redis_client: redis.Redis
) -> None:
    lines: list[str] = []
    watching = threading.Event()
    stop = threading.Event()

    def watch() -> None:
        with redis.Redis.from_url(system.redis_url).monitor() as monitor:
            watching.set()
            for command in monitor.listen():
                lines.append(f"{command['client_type']} {command['command']}")
                if stop.is_set():
                    return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    assert watching.wait(10)
    with system.client() as api:
        task_id = submit(api, "a short pause [sim:delay=1]")["task_id"]
        wait_for_state(api, task_id, "running")
        held = [text(raw) for raw in redis_client.hvals("unacked")]
        assert not [raw for raw in held if task_id in raw], "the running task's message is kept"
        assert wait_terminal(api, task_id)["state"] == "succeeded"

    # The ack follows the task's return at once, before the worker's SQL copy of the end
    # (it waits BATCH_WINDOW for company): once that copy dropped the task's SQL_PENDING
    # entry, whatever the ack sends has been sent.
    def copied() -> bool:
        return any(
            line.startswith("lua ZREM") and keys.SQL_PENDING in line and task_id in line
            for line in lines
        )

    wait_until(copied, 10, 0.05, "the worker's SQL copy of the end")
    stop.set()
    redis_client.ping()  # one more command for the watcher to see the stop
    watcher.join(10)

    tag = _delivery_tag(lines, task_id)
    mine = [line for line in lines if tag in line and any(k in line for k in UNACKED)]
    by_client = [line for line in mine if not line.startswith("lua")]
    by_script = [line for line in mine if line.startswith("lua")]
    assert _commands(by_client) == {"zadd", "hset"}, mine  # kombu's record at the fetch only
    assert _commands(by_script) == {"hdel", "zrem"}, mine  # the claim removed it
    assert not [raw for raw in redis_client.hvals("unacked") if task_id in text(raw)]
    assert redis_client.zscore("unacked_index", tag) is None


def _delivery_tag(lines: list[str], task_id: str) -> str:
    """The tag under which kombu recorded the task's message (its HSET carries the message)."""
    for line in lines:
        parts = line.split(" ", 4)
        if parts[1].upper() == "HSET" and parts[2] == "unacked" and task_id in parts[4]:
            return parts[3]
    raise AssertionError(f"kombu never recorded the message of {task_id}")


def _commands(lines: list[str]) -> set[str]:
    return {line.split(" ", 2)[1].lower() for line in lines}
