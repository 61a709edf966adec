"""What V1's stored conversations see: tenants never share one, and a message that already
reached V1 is never sent into the same V1 session again (the simulator keeps V1's history)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from deploy.embedded_valkey import EmbeddedValkey
from tests.harness import OTHER_API_KEY, System, new_system, submit, tag, wait_terminal, wait_until
from v1sim.process import SimulatorProcess


def record(simulator: SimulatorProcess, marker: str) -> dict[str, Any]:
    records = simulator.requests(tag=marker)
    assert len(records) == 1, records
    return records[0]


def mentions(lines: list[str], text: str) -> int:
    return sum(text in line for line in lines)


def test_tenants_with_the_same_session_id_never_share_a_v1_conversation(
    system: System, simulator: SimulatorProcess
) -> None:
    marker = tag()
    session = f"shared-{marker}"
    secret = f"alpha-secret-{marker}"
    with system.client() as alpha, system.client(OTHER_API_KEY) as beta:
        first = submit(alpha, f"{secret} [sim:tag={marker}-a1]", session_id=session)
        assert wait_terminal(alpha, first["task_id"])["state"] == "succeeded"
        other = submit(beta, f"beta-hello [sim:tag={marker}-b1]", session_id=session)
        assert wait_terminal(beta, other["task_id"])["state"] == "succeeded"
        again = submit(alpha, f"alpha-again [sim:tag={marker}-a2]", session_id=session)
        assert wait_terminal(alpha, again["task_id"])["state"] == "succeeded"
    a1, b1, a2 = (record(simulator, f"{marker}-{n}") for n in ("a1", "b1", "a2"))
    assert a1["session"] == a2["session"] != b1["session"]
    # The V1 session name gives away neither the tenant nor the client's session id.
    assert session not in a1["session"] and "alpha" not in a1["session"]
    assert mentions(b1["model_input"], secret) == 0
    # Within one tenant the history is there, so the check above could have failed.
    assert mentions(a2["model_input"], secret) == 1


def test_a_conversation_lock_is_per_tenant(system: System) -> None:
    """Tenant beta's turn in session S does not wait for tenant alpha's run in S."""
    marker = tag()
    session = f"lock-{marker}"
    with system.client() as alpha, system.client(OTHER_API_KEY) as beta:
        slow = submit(alpha, f"slow [sim:delay=4] [sim:tag={marker}]", session_id=session)
        wait_until(lambda: alpha.get(f"/v1/tasks/{slow['task_id']}").json()["state"]
                   == "running", timeout=20, what="alpha's run to start")  # fmt: skip
        quick = submit(beta, "quick", session_id=session)
        quick_done = wait_terminal(beta, quick["task_id"])
        slow_done = wait_terminal(alpha, slow["task_id"])
    assert quick_done["state"] == slow_done["state"] == "succeeded"
    assert quick_done["finished_at"] < slow_done["finished_at"]


def test_a_retried_message_is_not_repeated_in_v1s_conversation(
    system: System, simulator: SimulatorProcess
) -> None:
    marker = tag()
    session = f"retry-{marker}"
    flaky = f"flaky-{marker}"
    with system.client() as api:
        first = submit(api, f"first-turn-{marker} [sim:tag={marker}-1]", session_id=session)
        assert wait_terminal(api, first["task_id"])["state"] == "succeeded"
        # V1 accepts the run (200, the message enters its transcript), then errors.
        task = submit(api, f"{flaky} [sim:error_after=0x1] [sim:tag={marker}-2]",
                      session_id=session)  # fmt: skip
        done = wait_terminal(api, task["task_id"])
        assert done["state"] == "succeeded" and done["attempts"] == 2, done
        third = submit(api, f"third-{marker} [sim:tag={marker}-3]", session_id=session)
        assert wait_terminal(api, third["task_id"])["state"] == "succeeded"
    failed, retried = simulator.requests(tag=f"{marker}-2")
    assert failed["outcome"] == "error_chunk" and retried["outcome"] == "ok"
    old_session = record(simulator, f"{marker}-1")["session"]
    assert failed["session"] == old_session
    # The re-send went to a fresh V1 session seeded with the earlier turn, not the old one.
    assert retried["session"] != old_session
    assert mentions(retried["model_input"], f"first-turn-{marker}") == 1
    assert mentions(retried["model_input"], flaky) == 1
    assert mentions(retried["model_input"], "queued user message") == 0
    # Later turns stay in the new session, whose transcript holds the message once.
    assert record(simulator, f"{marker}-3")["session"] == retried["session"]
    transcript = simulator.transcript(retried["session"]) or []
    assert mentions([e["content"] for e in transcript], flaky) == 1


def test_waiting_retry_shows_the_last_error_and_success_clears_it(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    marker = tag()
    slow_retry = {"RETRY_BASE_DELAY": "6", "RETRY_MAX_DELAY": "6"}
    with new_system(valkey, simulator.url, tmp_path, **slow_retry) as sys_:
        sys_.start_gateway()
        sys_.start_worker()
        sys_.start_maintenance()  # it publishes retries that are due
        with sys_.client() as api:
            task = submit(api, f"once [sim:fail=503x1] [sim:tag={marker}]")
            url = f"/v1/tasks/{task['task_id']}"
            waiting = wait_until(lambda: _retry_waiting(api, url), timeout=20,
                                 what="the task waiting for its second attempt")  # fmt: skip
            done = wait_terminal(api, task["task_id"])
    assert waiting["state"] == "queued"
    assert waiting["error"]["type"] == "v1_server_error" and waiting["error"]["status"] == 503
    assert done["state"] == "succeeded" and done["error"] is None and done["attempts"] == 2


def _retry_waiting(api: httpx.Client, url: str) -> dict[str, Any] | None:
    body: dict[str, Any] = api.get(url).json()
    return body if body["state"] == "queued" and body["attempts"] == 1 else None
