"""Results are kept: they survive a gateway restart and the end of the Redis cache."""

from __future__ import annotations

import json

import redis

from tests.event_clients import sse_events, ws_connect
from tests.harness import System, submit, wait_terminal


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
