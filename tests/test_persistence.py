"""Results are kept: they survive a gateway restart and the end of the Redis cache."""

from __future__ import annotations

import json

import redis

from taskrecord.store.db import create_store_engine
from taskrecord.store.repo import TaskStore
from tests.event_clients import sse_events, ws_connect
from tests.harness import System, submit, wait_for_state, wait_listed, wait_terminal, wait_until


def test_results_survive_gateway_restart(system: System) -> None:
    with system.client() as api:
        task = submit(api, "keep me [sim:chunks=3]")
        done = wait_terminal(api, task["task_id"])
    assert system.gateway is not None
    system.gateway.stop()
    system.start_gateway(port=system.gateway_port)
    with system.client() as api:
        again = api.get(f"/v1/tasks/{task['task_id']}").json()
    assert again == done


def test_results_outlive_the_redis_cache(system: System, redis_client: redis.Redis) -> None:
    """Every Redis key of the task goes, as when RESULT_TTL runs out (real expiry:
    tests/test_durability.py); the SQL store still answers every read the same way."""
    with system.client() as api:
        task = submit(api, "outlive the cache [sim:chunks=3]", session_id="s-cache")
        task_id = task["task_id"]
        done = wait_terminal(api, task_id)
        wait_listed(api, [task_id], session_id="s-cache", state="succeeded")  # SQL caught up
        listed_before = api.get("/v1/tasks", params={"session_id": "s-cache"}).json()
    logged = sse_events(system.url, task_id)
    cached = sorted(k.decode() for k in redis_client.scan_iter(match=f"*{task_id}*"))
    assert {f"v2:task:{task_id}", f"v2:events:{task_id}", f"v2:partial:{task_id}"} <= set(cached)
    redis_client.delete(*cached)
    assert list(redis_client.scan_iter(match=f"*{task_id}*")) == []
    with system.client() as api:
        from_sql = api.get(f"/v1/tasks/{task_id}").json()
        listed = api.get("/v1/tasks", params={"session_id": "s-cache"}).json()
        cancel = api.post(f"/v1/tasks/{task_id}/cancel")
        retry = api.post(f"/v1/tasks/{task_id}/retry")
        # Its event log went with the cache: said at once, not a stream waiting forever.
        with api.stream("GET", f"/v1/tasks/{task_id}/events") as stream:
            gone = stream.status_code, stream.read() if stream.status_code != 200 else b""
    with ws_connect(system.url) as ws:
        ws.send(json.dumps({"type": "subscribe", "task_id": task_id}))
        reply = json.loads(ws.recv(timeout=10))
    assert from_sql == done
    assert gone[0] == 410 and json.loads(gone[1])["error"]["type"] == "gone"
    assert reply["type"] == "error" and "expired" in reply["message"]
    assert listed == listed_before and task_id in [t["task_id"] for t in listed["tasks"]]
    assert cancel.status_code == 409 and cancel.json()["error"]["state"] == "succeeded"
    assert retry.status_code == 409
    assert logged[-1]["type"] == "succeeded"
    assert logged[-1]["data"]["result"] == done["result"]


def test_sql_history_keeps_every_attempt_of_short_and_long_tasks(system: System) -> None:
    """A worker holds a task's claim-time SQL copy back briefly (written with the finish
    when the task ends meanwhile): a long task's row still shows it running, with its
    attempt, while it runs; a short task's history still has both steps."""
    store = TaskStore(create_store_engine(f"sqlite:///{system.workdir / 'tasks.db'}"))
    with system.client() as api:
        long_id = submit(api, "long [sim:delay=6]")["task_id"]
        short_id = submit(api, "short [sim:chunks=1]")["task_id"]
        wait_for_state(api, long_id, "running")

        def history(task_id: str) -> list[tuple[str, str]]:
            return [(t.state, t.detail or "") for t in store.transitions(task_id)]

        def attempt_in_sql() -> bool:
            return any(s == "running" and d.startswith("attempt on") for s, d in history(long_id))

        wait_until(attempt_in_sql, 5, 0.1, "the long task's attempt in its SQL history")
        row = store.get(long_id)
        assert row is not None and row.state == "running"
        assert api.get(f"/v1/tasks/{long_id}").json()["state"] == "running"
        wait_terminal(api, short_id)
        wait_until(lambda: ("succeeded", "") in history(short_id), 10, 0.1, "short task's end")
        steps = history(short_id)
        assert [s for s, d in steps if d.startswith("attempt on")] == ["running"], steps
        assert wait_terminal(api, long_id)["state"] == "succeeded"
    store.engine.dispose()
