"""A real HTTP webhook receiver for the tests, on 127.0.0.1 in a thread (`http.server`).

Each path can be told to fail its first requests (503) before it accepts (204); every
request is kept with its headers and raw body, for the test to verify the signature.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    path: str  # with the query, as sent
    headers: dict[str, str]
    body: bytes
    answered: int


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                status = receiver._answer(self.path.partition("?")[0])
                with receiver._lock:
                    receiver.requests.append(
                        Received(self.path, dict(self.headers.items()), body, status)
                    )
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def fail_first(self, path: str, count: int) -> None:
        """The next `count` requests to `path` get 503."""
        with self._lock:
            self._failures[path] = count

    def _answer(self, path: str) -> int:
        with self._lock:
            left = self._failures.get(path, 0)
            if left > 0:
                self._failures[path] = left - 1
                return 503
        return 204

    def to(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if r.path.partition("?")[0] == path]


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
        thread.join(5)
