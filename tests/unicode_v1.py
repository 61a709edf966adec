"""A minimal V1 stand-in for tests/test_unicode.py: it answers every chat completion with
the same non-ASCII deltas, written a few bytes at a time so multi-byte characters arrive
split across TCP segments, and it keeps the bodies it was sent.

The bundled simulator answers `tok0 tok1 ...` only; this is the one thing it cannot do.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DELTAS = [
    "Grüße, ",
    "你好 ",
    "👩🏽‍💻 ",  # woman technologist, skin tone, zero-width joiner
    "🇺🇦 ",
    "שלום مرحبا ",
    "e\u0301 ",  # e + combining acute accent
    "\U0001d518\U0001d52b\U0001d526 \U0001f600 ",  # outside the BMP (fraktur, emoji)
    '"quoted" back\\slash / \u2028line\u2029 tab\t nl\n',
    "🎉",
]
OUTPUT = "".join(DELTAS)
PIECE = 5  # bytes per write: splits most multi-byte characters
SLOW_MARKER = "[slow]"  # such a message streams one delta every 0.3 s


def _chunk(delta: dict[str, str], finish: str | None = None) -> bytes:
    body = {"id": "chatcmpl-unicode", "object": "chat.completion.chunk", "created": 0,
            "model": "openclaw/main",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    return b"data: " + json.dumps(body, ensure_ascii=False).encode() + b"\n\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: UnicodeV1

    def log_message(self, *_args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # /v1/models, asked by /readyz
        body = b'{"object":"list","data":[{"id":"openclaw/main","object":"model"}]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.received.append(payload)
        slow = SLOW_MARKER in json.dumps(payload, ensure_ascii=False)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            self._write(_chunk({"role": "assistant"}))
            for delta in DELTAS:
                self._write(_chunk({"content": delta}), pause=0.3 if slow else 0.002)
            self._write(_chunk({}, "stop"))
            self._write(b"data: [DONE]\n\n")
        except (BrokenPipeError, ConnectionResetError):
            self.server.disconnects += 1
        self.close_connection = True

    def _write(self, data: bytes, pause: float = 0.002) -> None:
        for start in range(0, len(data), PIECE):
            self.wfile.write(data[start : start + PIECE])
            self.wfile.flush()
            time.sleep(pause / max(1, len(data) // PIECE))


class UnicodeV1(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.received: list[dict[str, Any]] = []
        self.disconnects = 0
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> UnicodeV1:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
