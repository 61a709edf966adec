"""The V1 client sends each request (head and body) in one socket write, over one kept
connection, against the real simulator; httpcore's own stream underneath is counted."""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpcore2
import httpx2 as httpx
import pytest

from tasks.v1_client import V1Client
from tasks.v1_transport import FLUSH_AT, CoalescingTransport
from tests.harness import V1_TOKEN
from v1sim.process import SimulatorProcess
from v1sim.run import full_content


class CountedStream(httpcore2.NetworkStream):
    """httpcore's socket stream, its writes counted."""

    def __init__(self, stream: httpcore2.NetworkStream, writes: list[int]) -> None:
        self.stream, self.writes = stream, writes

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.writes.append(len(buffer))
        self.stream.write(buffer, timeout)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.stream.read(max_bytes, timeout)

    def close(self) -> None:
        self.stream.close()

    def start_tls(self, *args: Any, **kwargs: Any) -> httpcore2.NetworkStream:
        return CountedStream(self.stream.start_tls(*args, **kwargs), self.writes)

    def get_extra_info(self, info: str) -> Any:
        return self.stream.get_extra_info(info)


class CountedBackend(httpcore2.NetworkBackend):
    def __init__(self) -> None:
        self.connects = 0
        self.writes: list[int] = []

    def connect_tcp(self, *args: Any, **kwargs: Any) -> httpcore2.NetworkStream:
        self.connects += 1
        return CountedStream(httpcore2.SyncBackend().connect_tcp(*args, **kwargs), self.writes)


def client_over(simulator: SimulatorProcess, backend: CountedBackend) -> V1Client:
    transport = CoalescingTransport(httpx.Limits(max_connections=10), network_backend=backend)
    return V1Client(simulator.url, V1_TOKEN, transport=transport)


def test_each_request_is_one_write_on_one_kept_connection(simulator: SimulatorProcess) -> None:
    backend = CountedBackend()
    client = client_over(simulator, backend)
    try:
        for i in range(3):
            messages = [{"role": "user", "content": f"call {i} [sim:chunks=3]"}]
            result = client.chat(agent_id="main", messages=messages)
            assert result.content == full_content(3)
            assert result.finish_reason == "stop"
    finally:
        client.close()
    assert backend.connects == 1
    assert len(backend.writes) == 3  # httpcore alone writes head and body apart: 6


def test_a_body_past_the_hold_limit_still_arrives_whole(simulator: SimulatorProcess) -> None:
    backend = CountedBackend()
    client = client_over(simulator, backend)
    words = FLUSH_AT // 2  # "wo " is 3 bytes: the body is past the limit
    text = " ".join(["wo"] * words) + " [sim:chunks=2]"
    try:
        result = client.chat(agent_id="main", messages=[{"role": "user", "content": text}])
    finally:
        client.close()
    assert result.content == full_content(2)
    assert result.usage is not None and result.usage["prompt_tokens"] >= words
    assert sum(backend.writes) > FLUSH_AT
    assert len(backend.writes) <= 2


SSE_BODY = (
    b'data: {"choices":[{"index":0,"delta":{"content":"over tls"},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n"
)


class _SseHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: list[bytes] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(SSE_BODY)))
        self.end_headers()
        self.wfile.write(SSE_BODY)

    def log_message(self, *_args: Any) -> None:
        pass


def test_a_tls_endpoint_gets_each_request_in_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A self-signed certificate for 127.0.0.1, trusted through SSL_CERT_FILE as a
    # deployment would trust its own CA.
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    _SseHandler.bodies.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _SseHandler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    backend = CountedBackend()
    transport = CoalescingTransport(httpx.Limits(max_connections=10), network_backend=backend)
    client = V1Client(f"https://127.0.0.1:{server.server_port}", V1_TOKEN, transport=transport)
    try:
        for i in range(2):
            messages = [{"role": "user", "content": f"secret {i}"}]
            assert client.chat(agent_id="main", messages=messages).content == "over tls"
    finally:
        client.close()
        server.shutdown()
        server.server_close()
    assert [json.loads(body)["messages"][0]["content"] for body in _SseHandler.bodies] == [
        "secret 0",
        "secret 1",
    ]
    assert backend.connects == 1
    # One encrypted write per request (the handshake goes on the socket underneath).
    assert len(backend.writes) == 2
