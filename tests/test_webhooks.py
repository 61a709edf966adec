"""Completion webhooks end to end: a real receiver on 127.0.0.1 (allow-listed), a real
gateway, worker and maintenance. Every attempt is signed (verified with the Standard
Webhooks library), retried with backoff after 503s, recorded and listed; every terminal
state sends one; resend makes a new delivery; private URLs are refused before any
connection, at submit and again at delivery.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from standardwebhooks import Webhook

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord import keys
from taskrecord.live import LiveStore
from taskrecord.settings import get_settings
from tests.harness import (
    OTHER_API_KEY,
    System,
    new_system,
    submit,
    tag,
    wait_terminal,
    wait_until,
)
from tests.webhook_receiver import Received, Receiver, running_receiver
from v1sim.process import SimulatorProcess

SECRET = "whsec_" + base64.b64encode(b"integration-webhook-secret-42-bytes-long!!").decode()
FAST_RETRIES = {
    "WEBHOOK_SECRET": SECRET,
    "WEBHOOK_RETRY_BASE_DELAY": "0.2",
    "WEBHOOK_RETRY_MAX_DELAY": "1",
    "WEBHOOK_TIMEOUT": "5",
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with running_receiver() as server:
        yield server


@pytest.fixture(scope="module")
def hooked(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    """A system whose webhooks may reach 127.0.0.1 (the receiver), nothing else private."""
    workdir = tmp_path_factory.mktemp("webhooks")
    with new_system(
        valkey, simulator.url, workdir, WEBHOOK_ALLOWED_HOSTS="127.0.0.1", **FAST_RETRIES
    ) as sys_:
        sys_.start_gateway()
        sys_.start_worker()
        sys_.start_maintenance()
        yield sys_


def header(received: Received, name: str) -> str:
    return next(v for k, v in received.headers.items() if k.lower() == name)


def verified(received: Received) -> dict[str, Any]:
    """The payload, if its signature verifies (raises otherwise)."""
    headers = {k.lower(): v for k, v in received.headers.items()}
    payload: dict[str, Any] = Webhook(SECRET).verify(received.body, headers)
    return payload


def deliveries(api: httpx.Client, task_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/v1/tasks/{task_id}/deliveries")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["deliveries"]
    return found


def settled(api: httpx.Client, task_id: str, count: int = 1) -> list[dict[str, Any]]:
    """The task's deliveries once `count` of them exist and none is pending."""

    def check() -> list[dict[str, Any]] | None:
        found = deliveries(api, task_id)
        done = len(found) >= count and all(d["state"] != "pending" for d in found)
        return found if done else None

    return wait_until(check, 30, 0.1, f"{count} settled deliveries of {task_id}")  # type: ignore[no-any-return]


def arrived(receiver: Receiver, path: str, count: int) -> list[Received]:
    return wait_until(  # type: ignore[no-any-return]
        lambda: receiver.to(path) if len(receiver.to(path)) >= count else None,
        30, 0.1, f"{count} requests to {path}",
    )  # fmt: skip


def test_a_task_webhook_is_retried_after_503s_signed_and_every_attempt_listed(
    hooked: System, receiver: Receiver
) -> None:
    path = f"/hook/flaky-{tag()}"
    receiver.fail_first(path, 2)
    with hooked.client() as api:
        task = submit(api, f"hello [sim:tag={tag()}]", webhook_url=receiver.url(path))
        done = wait_terminal(api, task["task_id"])
        listed = settled(api, task["task_id"])
    got = arrived(receiver, path, 3)
    assert done["state"] == "succeeded"
    assert [r.answered for r in got] == [503, 503, 204]
    # One message: the same webhook-id on every attempt, each attempt signed anew.
    assert len({header(r, "webhook-id") for r in got}) == 1
    payloads = [verified(r) for r in got]
    assert payloads[0] == payloads[2]
    assert payloads[0]["type"] == "task.succeeded"
    data = payloads[0]["data"]
    assert data["task_id"] == task["task_id"] and data["state"] == "succeeded"
    assert data["result"]["content"] == done["result"]["content"] and "error" not in data
    assert data["attempts"] == 1 and data["finished_at"] and data["started_at"]
    # Sent to the checked address, under the name the URL gave.
    assert header(got[0], "host") == f"127.0.0.1:{receiver.port}"
    [delivery] = listed
    assert delivery["delivery_id"] == header(got[0], "webhook-id")
    assert delivery["state"] == "delivered" and delivery["event_type"] == "task.succeeded"
    attempts = delivery["attempts"]
    assert [a["status_code"] for a in attempts] == [503, 503, 204]
    assert all(a["error"] is None and a["duration_ms"] >= 0 and a["at"] for a in attempts)
    assert attempts[0]["at"] < attempts[1]["at"] < attempts[2]["at"]
    assert delivery["next_attempt_at"] is None and delivery["finished_at"]


def test_failed_timed_out_and_cancelled_tasks_each_send_their_webhook(
    hooked: System, receiver: Receiver
) -> None:
    marker = tag()
    paths = {s: f"/hook/{s}-{marker}" for s in ("failed", "timed_out", "cancelled")}
    session = f"s-{marker}"
    with hooked.client() as api:
        failed = submit(api, "bad [sim:fail=400]", webhook_url=receiver.url(paths["failed"]))
        slow = submit(api, "slow [sim:delay=5]", timeout_seconds=1,
                      webhook_url=receiver.url(paths["timed_out"]))  # fmt: skip
        # Held queued behind the running head of its session, then cancelled by the gateway.
        submit(api, "head [sim:delay=2]", session_id=session)
        held = submit(api, "held", session_id=session, webhook_url=receiver.url(paths["cancelled"]))
        cancelled = api.post(f"/v1/tasks/{held['task_id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
        ended = {t["task_id"]: wait_terminal(api, t["task_id"]) for t in (failed, slow)}
    assert ended[failed["task_id"]]["state"] == "failed"
    assert ended[slow["task_id"]]["state"] == "timed_out"
    expected = {"failed": failed, "timed_out": slow, "cancelled": held}
    for state, path in paths.items():
        [received] = arrived(receiver, path, 1)
        payload = verified(received)
        assert payload["type"] == f"task.{state}"
        assert payload["data"]["state"] == state
        assert payload["data"]["task_id"] == expected[state]["task_id"]
        assert "result" not in payload["data"]
    assert verified(receiver.to(paths["failed"])[0])["data"]["error"]["type"] == "v1_bad_request"
    assert verified(receiver.to(paths["cancelled"])[0])["data"]["error"]["type"] == "cancelled"


def test_resend_makes_a_new_delivery_with_a_new_webhook_id(
    hooked: System, receiver: Receiver
) -> None:
    path = f"/hook/resend-{tag()}"
    with hooked.client() as api, hooked.client(OTHER_API_KEY) as other:
        task = submit(api, "resend me", webhook_url=receiver.url(path))
        task_id = task["task_id"]
        wait_terminal(api, task_id)
        [first] = settled(api, task_id)
        # Another tenant sees neither the deliveries nor can resend them.
        assert other.get(f"/v1/tasks/{task_id}/deliveries").status_code == 404
        assert other.post(f"/v1/tasks/{task_id}/deliveries/resend").status_code == 404
        resent = api.post(f"/v1/tasks/{task_id}/deliveries/resend")
        assert resent.status_code == 202, resent.text
        both = settled(api, task_id, 2)
        plain = submit(api, "no webhook here")
        wait_terminal(api, plain["task_id"])
        refused = api.post(f"/v1/tasks/{plain['task_id']}/deliveries/resend")
    again = resent.json()
    assert again["trigger"] == "resend" and again["delivery_id"] != first["delivery_id"]
    got = arrived(receiver, path, 2)
    assert [header(r, "webhook-id") for r in got] == [first["delivery_id"], again["delivery_id"]]
    assert got[0].body == got[1].body and verified(got[1])["data"]["task_id"] == task_id
    assert [(d["trigger"], d["state"]) for d in both] == [
        ("ended", "delivered"),
        ("resend", "delivered"),
    ]
    assert (
        refused.status_code == 409 and "no webhook delivery" in refused.json()["error"]["message"]
    )


def test_webhook_urls_secrets_and_the_signing_key_stay_out_of_logs(
    hooked: System, receiver: Receiver
) -> None:
    marker = tag()
    path = f"/hook/creds-{marker}"
    url = f"http://user:pw-{marker}@127.0.0.1:{receiver.port}{path}?token=q-{marker}"
    with hooked.client() as api:
        task = submit(api, "with credentials", webhook_url=url)
        wait_terminal(api, task["task_id"])
        [delivery] = settled(api, task["task_id"])
    [received] = arrived(receiver, path, 1)
    assert received.path == f"{path}?token=q-{marker}"  # the receiver got the whole URL
    assert header(received, "authorization").startswith("Basic ")
    assert delivery["url"] == f"http://127.0.0.1:{receiver.port}{path}?..."
    logs = "".join(p.read_text(errors="replace") for p in Path(hooked.workdir).glob("*.log"))
    assert f"webhook {delivery['delivery_id']}" in logs  # the worker did log the delivery
    for secret in (f"pw-{marker}", f"q-{marker}", SECRET.removeprefix("whsec_")):
        assert secret not in logs


def test_private_urls_are_refused_at_submit_and_again_at_delivery(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path: Path, receiver: Receiver
) -> None:
    """No allow-list here: the receiver's loopback address is as forbidden as any."""
    default_path = f"/hook/default-{tag()}"
    direct = receiver.url(f"/hook/direct-{tag()}")
    strict = new_system(
        valkey, simulator.url, tmp_path, WEBHOOK_MAX_ATTEMPTS="2",
        WEBHOOK_DEFAULT_URLS=f"alpha={receiver.url(default_path)}", **FAST_RETRIES,
    )  # fmt: skip
    with strict:
        strict.start_gateway()
        strict.start_worker()
        strict.start_maintenance()
        with strict.client() as api:
            refusals = {
                url: api.post("/v1/tasks", json={"message": "x", "webhook_url": url})
                for url in ("http://10.0.0.1/hook", "http://localhost/hook", direct,
                            "ftp://example.com/hook")
            }  # fmt: skip
            # The tenant default is the operator's: accepted now, checked at delivery.
            task = submit(api, "to the default hook")
            wait_terminal(api, task["task_id"])
            [delivery] = settled(api, task["task_id"])
    why = {
        "http://10.0.0.1/hook": "private address",
        "http://localhost/hook": "loopback",
        direct: "host 127.0.0.1, a loopback address",
    }
    for url, response in refusals.items():
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        if url.startswith("ftp:"):  # not http(s): the request schema itself refuses it
            assert error["type"] == "invalid_request" and "webhook_url" in error["message"]
            continue
        assert error["type"] == "invalid_webhook_url" and error["message"].startswith("webhook_url")
        assert why[url] in error["message"]
    assert delivery["state"] == "failed" and len(delivery["attempts"]) == 2
    for attempt in delivery["attempts"]:
        assert attempt["status_code"] is None
        assert attempt["error"].startswith("refused before connecting: host 127.0.0.1")
    # The receiver heard nothing for these (the other tests show it hears what is sent).
    assert not [r for r in receiver.requests if r.path.startswith((default_path, "/hook/direct-"))]


def test_every_script_that_ends_a_task_marks_its_webhook_due(valkey: EmbeddedValkey) -> None:
    """finalize (worker, maintenance's expiry and crash recovery) and cancel (gateway, CLI,
    revoke) both end through the prelude's `ended`, which owes the webhook atomically."""
    client = redis.Redis.from_url(valkey.url)
    live = LiveStore(client, get_settings(redis_url=valkey.url, v1_url="http://hooks-alone"))
    marker = tag()
    ends = {
        "succeeded": live.calls.finalize(f"ok-{marker}", "succeeded", result={"content": "x"}),
        "failed": live.calls.finalize(f"bad-{marker}", "failed", error={"type": "worker_lost"}),
        "timed_out": live.calls.finalize(f"late-{marker}", "timed_out", only_from="queued"),
        "cancelled": live.calls.cancel(f"stop-{marker}", "cancelled by request"),
        "no_webhook": live.calls.finalize(f"none-{marker}", "succeeded", result={}),
    }
    try:
        for name, call in ends.items():
            task_id = str(call.args[0])
            hook = "" if name == "no_webhook" else "http://127.0.0.1:9/hook"
            state = "queued" if name in ("timed_out", "cancelled") else "running"
            client.hset(keys.task_key(task_id), mapping={
                "id": task_id, "tenant": "t", "agent_id": "main", "state": state,
                "webhook_url": hook,
            })  # fmt: skip
            live.run(call)
        marked = {text.decode() for text in client.zrange(keys.WEBHOOKS_DUE, 0, -1)}
        for name, call in ends.items():
            assert (f"t:{call.args[0]}" in marked) == (name != "no_webhook"), name
            assert client.hget(keys.task_key(str(call.args[0])), "state") != b"running"
        # Ending an ended task again owes nothing more (and changes nothing).
        before = client.zscore(keys.WEBHOOKS_DUE, f"t:ok-{marker}")
        live.run(live.calls.finalize(f"ok-{marker}", "failed", error={"type": "x"}))
        assert client.zscore(keys.WEBHOOKS_DUE, f"t:ok-{marker}") == before
    finally:
        ids = [str(call.args[0]) for call in ends.values()]
        client.zrem(keys.WEBHOOKS_DUE, *[f"t:{i}" for i in ids])
        client.delete(*[k for i in ids for k in (keys.task_key(i), keys.events_key(i))])
        client.close()
