"""Results are kept: they survive a gateway restart and the end of the Redis cache."""

from __future__ import annotations

from tests.harness import System, submit, wait_terminal


def test_results_survive_gateway_restart(system: System, redis_client) -> None:  # type: ignore[no-untyped-def]
    with system.client() as api:
        task = submit(api, "keep me [sim:chunks=3]")
        done = wait_terminal(api, task["task_id"])
    assert system.gateway is not None
    system.gateway.stop()
    system.start_gateway(port=system.gateway_port)
    with system.client() as api:
        again = api.get(f"/v1/tasks/{task['task_id']}").json()
    assert again == done
    # Once Redis no longer has it (cache expired), the SQL store still answers the same.
    redis_client.delete(f"v2:task:{task['task_id']}")
    with system.client() as api:
        from_sql = api.get(f"/v1/tasks/{task['task_id']}").json()
    assert from_sql["result"] == done["result"]
    assert from_sql["state"] == "succeeded" and from_sql["attempts"] == 1
