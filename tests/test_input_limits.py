"""Abuse limits, against the real gateway: bodies refused before they are read (unknown key:
401; over MAX_REQUEST_BYTES: 413), message counts and totals, lone surrogates, strict and
finite numbers, and the per-tenant priority ceiling."""

from __future__ import annotations

import itertools
import json
import select
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from deploy.embedded_valkey import EmbeddedValkey
from tests.harness import ADMIN_KEY, API_KEY, OTHER_API_KEY, System, new_system
from v1sim.process import SimulatorProcess

MiB = 1024 * 1024
CAP = 2 * MiB  # MAX_REQUEST_BYTES's default
HUNDRED_MB = 100 * MiB
CHUNK = b"x" * (64 * 1024)


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes
    sent: int  # body bytes the server let us send before it answered
    seconds: float

    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = json.loads(self.body)["error"]
        return error


def raw_post(
    system: System,
    path: str,
    body: Iterable[bytes],
    *,
    length: int | None,
    headers: dict[str, str] | None = None,
) -> RawReply:
    """POST over a bare socket, streaming `body` (chunked when `length` is None) and stopping
    as soon as the gateway answers: httpx would send everything before reading a reply."""
    started = time.monotonic()
    sock = socket.create_connection(("127.0.0.1", system.gateway_port), timeout=20)
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{system.gateway_port}"]
    head.append("Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}")
    head += ["Content-Type: application/json"]
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    sent = 0
    with sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        try:
            for chunk in body:
                if select.select([sock], [], [], 0)[0]:
                    break  # an answer (or the close) is there: stop sending
                sock.sendall(chunk if length is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            else:
                if length is None:
                    sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the gateway stopped reading and closed: its answer was sent first
        status, reply_headers, reply = _read_reply(sock)
    return RawReply(status, reply_headers, reply, sent, time.monotonic() - started)


def _read_reply(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        assert piece, f"connection closed before an answer: {data!r}"
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:])
    }
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        rest += piece
    return int(lines[0].split()[1]), headers, rest[:length]


def hundred_mb() -> Iterator[bytes]:
    return itertools.repeat(CHUNK, HUNDRED_MB // len(CHUNK))


class PeakRss:
    """Samples a process' RSS in a thread until stopped; `growth` is peak minus start."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.start = self.peak = int(self.process.memory_info().rss)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.done.wait(0.005):
            self.peak = max(self.peak, int(self.process.memory_info().rss))

    def __enter__(self) -> PeakRss:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join(5)

    @property
    def growth(self) -> int:
        return self.peak - self.start


def test_unauthenticated_100mb_bodies_are_refused_unread(system: System) -> None:
    assert system.gateway is not None
    replies: list[RawReply] = []
    lock = threading.Lock()

    def post(length: int | None, auth: str | None) -> None:
        headers = {"Authorization": auth} if auth else {}
        reply = raw_post(system, "/v1/tasks", hundred_mb(), length=length, headers=headers)
        with lock:
            replies.append(reply)

    cases = [(HUNDRED_MB, None), (None, None), (HUNDRED_MB, "Bearer wrong"), (None, "Bearer x")]
    with PeakRss(system.gateway.pid) as rss:
        threads = [threading.Thread(target=post, args=case) for case in cases]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert len(replies) == 4
    for reply in replies:
        assert reply.status == 401, reply
        assert reply.headers["www-authenticate"] == "Bearer"
        assert reply.error()["type"] == "unauthorized"
        assert reply.sent < 20 * MiB, reply.sent  # the gateway stopped taking the body
    assert rss.growth < 20 * MiB, f"gateway RSS grew by {rss.growth / MiB:.1f} MiB"
    assert httpx.get(f"{system.url}/healthz").status_code == 200


def test_known_key_of_either_kind_passes_the_early_check(system: System) -> None:
    """Admin routes: the early check lets an operator key through, the route decides."""
    url = f"{system.url}/v1/admin/queues"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
    by_user = httpx.get(url, headers={"Authorization": f"Bearer {API_KEY}"})
    assert by_user.status_code == 401 and "ADMIN_API_KEYS" in by_user.json()["error"]["message"]
    for open_path in ("/healthz", "/readyz"):
        assert httpx.get(f"{system.url}{open_path}").status_code == 200
    # /metrics takes its own token (tests/test_metrics_auth.py), not an API key.
    assert httpx.get(f"{system.url}/metrics").status_code == 401


def test_declared_oversized_body_is_413_before_any_byte_is_sent(system: System) -> None:
    reply = raw_post(
        system, "/v1/tasks", [], length=HUNDRED_MB, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert reply.status == 413, reply
    error = reply.error()
    assert error["type"] == "request_too_large"
    assert f"{HUNDRED_MB} bytes" in error["message"] and f"limit is {CAP} bytes" in error["message"]
    assert reply.sent == 0


def test_streamed_oversized_body_is_413_at_the_cap(system: System) -> None:
    assert system.gateway is not None
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with PeakRss(system.gateway.pid) as rss:
        reply = raw_post(system, "/v1/tasks", hundred_mb(), length=None, headers=auth)
    assert reply.status == 413, reply
    assert reply.error()["type"] == "request_too_large"
    assert f"limit is {CAP} bytes (MAX_REQUEST_BYTES)" in reply.error()["message"]
    assert CAP <= reply.sent < CAP + 20 * MiB
    assert rss.growth < 20 * MiB, f"gateway RSS grew by {rss.growth / MiB:.1f} MiB"


def test_300000_empty_messages_are_refused(system: System) -> None:
    """The fuzz run's body: 11.4 MB of empty messages and one real one."""
    messages = [{"role": "user", "content": ""}] * 300_000 + [{"role": "user", "content": "hi"}]
    body = json.dumps({"messages": messages}).encode()
    auth = {"Authorization": f"Bearer {API_KEY}"}
    started = time.monotonic()
    reply = raw_post(system, "/v1/tasks", [body], length=len(body), headers=auth)
    assert reply.status == 413 and reply.error()["type"] == "request_too_large", reply
    assert time.monotonic() - started < 2
    assert reply.sent == 0  # refused on its Content-Length


@pytest.mark.parametrize(
    ("messages", "status", "error_type", "names"),
    [
        (
            [{"role": "user", "content": "hi"}] * 201,
            413,
            "too_many_messages",
            "messages: has 201 entries; the limit is 200 (MAX_MESSAGES)",
        ),
        (
            [{"role": "user", "content": "x" * 60_000}] * 2,
            413,
            "message_too_large",
            "120000 characters; the limit is 100000",
        ),
        (
            [{"role": "user", "content": ""}, {"role": "user", "content": "hi"}],
            422,
            "invalid_request",
            "messages.0.content: is empty",
        ),
        (
            [{"role": "assistant", "content": " "}, {"role": "user", "content": "hi"}],
            422,
            "invalid_request",
            "messages.0.content: is empty",
        ),
    ],
)
def test_message_lists_are_bounded(
    system: System, messages: list[dict[str, str]], status: int, error_type: str, names: str
) -> None:
    with system.client() as api:
        response = api.post("/v1/tasks", json={"messages": messages})
    assert response.status_code == status, response.text
    assert response.json()["error"]["type"] == error_type
    assert names in response.json()["error"]["message"]


def test_full_size_message_in_the_most_verbose_json_fits_the_body_cap(system: System) -> None:
    """100,000 astral characters as `\\ud83d\\ude00` escapes: 1.2 MB, under MAX_REQUEST_BYTES."""
    body = json.dumps({"message": "\U0001f600" * 100_000}).encode()  # ensure_ascii: escapes
    assert 1_200_000 <= len(body) < CAP
    with system.client() as api:
        response = api.post("/v1/tasks", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 202, response.text
        api.post(f"/v1/tasks/{response.json()['task_id']}/cancel")


SURROGATE = "hi \\ud800"  # a JSON escape, as the fuzz run sent it


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (f'{{"message": "{SURROGATE}"}}', "message"),
        (
            f'{{"messages": [{{"role": "user", "content": "{SURROGATE}"}}]}}',
            "messages.0.content",
        ),
        ('{"message": "hi", "session_id": "s\\udc00"}', "session_id"),
        ('{"message": "hi", "agent_id": "a\\udc00"}', "agent_id"),
        (f'{{"message": "hi", "metadata": {{"k": "{SURROGATE}"}}}}', "metadata: value of 'k'"),
        ('{"message": "hi", "metadata": {"k\\ud800": "v"}}', "metadata: key 'k\\ud800'"),
        ('{"message": "hi", "c\\ud800lour": 1}', "unknown field(s): c\\ud800lour"),
    ],
)
def test_lone_surrogates_are_422_naming_the_field(system: System, body: str, field: str) -> None:
    with system.client() as api:
        response = api.post(
            "/v1/tasks", content=body.encode(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request"
    assert field in error["message"], error


@pytest.mark.parametrize("key", [b"k\xed\xa0\x80", b"caf\xc3\xa9", b"x" * 201])
def test_idempotency_key_must_be_printable_ascii(system: System, key: bytes) -> None:
    with system.client() as api:
        response = api.post("/v1/tasks", json={"message": "hi"}, headers={b"Idempotency-Key": key})
    assert response.status_code == 422, response.text
    assert "Idempotency-Key: must be 1-200 printable ASCII" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("fragment", "names"),
    [
        ('"priority": true', "priority: Input should be a valid integer"),
        # JSON has one number type: 5.0 is the integer 5 (JSON Schema agrees), 5.5 is not.
        ('"priority": 5.5', "priority:"),
        ('"priority": NaN', "priority: must be a finite number, not NaN or Infinity"),
        ('"estimated_seconds": NaN', "estimated_seconds: must be a finite number"),
        ('"estimated_seconds": Infinity', "estimated_seconds: must be a finite number"),
        ('"estimated_seconds": true', "estimated_seconds: Input should be a valid number"),
        ('"timeout_seconds": -Infinity', "timeout_seconds: must be a finite number"),
        ('"timeout_seconds": false', "timeout_seconds: Input should be a valid integer"),
        ('"metadata": {"n": NaN}', "metadata: value of 'n' must be a finite number"),
    ],
)
def test_numbers_are_strict_and_finite(system: System, fragment: str, names: str) -> None:
    with system.client() as api:
        response = api.post(
            "/v1/tasks",
            content=f'{{"message": "hi", {fragment}}}'.encode(),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 422, response.text
    assert names in response.json()["error"]["message"]


@pytest.fixture(scope="module")
def ceiling_system(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    """A gateway (no workers: routing is decided at submit) with alpha in PRIORITY_TENANTS
    and beta limited to TENANT_MAX_PRIORITY=6."""
    workdir: Path = tmp_path_factory.mktemp("ceiling")
    system = new_system(
        valkey, simulator.url, workdir, PRIORITY_TENANTS="alpha", TENANT_MAX_PRIORITY="6"
    )
    with system:
        system.start_gateway()
        yield system


@pytest.mark.parametrize(
    ("api_key", "priority", "status", "queue"),
    [
        (API_KEY, 10, 202, "priority"),
        (API_KEY, 9, 202, "priority"),
        (OTHER_API_KEY, 6, 202, "short"),
        (OTHER_API_KEY, 7, 422, None),
        (OTHER_API_KEY, 9, 422, None),
    ],
)
def test_tenant_priority_ceiling(
    ceiling_system: System, api_key: str, priority: int, status: int, queue: str | None
) -> None:
    with ceiling_system.client(api_key) as api:
        response = api.post("/v1/tasks", json={"message": "hi", "priority": priority})
    assert response.status_code == status, response.text
    if queue is not None:
        assert response.json()["queue"] == queue
    else:
        error = response.json()["error"]
        assert error["type"] == "priority_not_allowed" and error["max_priority"] == 6
        assert f"priority: {priority} is above this tenant's maximum of 6" in error["message"]


def test_default_ceiling_is_the_priority_threshold(system: System) -> None:
    """Unset TENANT_MAX_PRIORITY: PRIORITY_THRESHOLD (8); beta is not in PRIORITY_TENANTS."""
    with system.client(OTHER_API_KEY) as api:
        refused = api.post("/v1/tasks", json={"message": "hi", "priority": 9})
        accepted = api.post("/v1/tasks", json={"message": "hi", "priority": 8})
    assert refused.status_code == 422, refused.text
    assert "maximum of 8" in refused.json()["error"]["message"]
    assert accepted.status_code == 202 and accepted.json()["queue"] != "priority"
