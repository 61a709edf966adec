"""The V1 client's transport: a request's head and body leave in one socket send.

httpcore writes an HTTP/1.1 request's head and its body with one send each, so a V1 call
(a few hundred bytes of JSON) cost two sends, two TCP segments and two wake-ups of V1
where one does; on loopback a send also pays the receiver's TCP work. The two were 7 % of
a short task's worker samples (issue 13, py-spy). Here a connection's writes are held until
it next reads (every request is followed by reading its response) or until FLUSH_AT bytes
are held, then go as one.

httpx's `HTTPTransport` takes no network backend, httpcore's pool does: the transport
below builds its pool as `HTTPTransport` does (same limits, TLS context), with one.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2 as httpx

# Held bytes past which a write goes at once (a large body is not held whole).
FLUSH_AT = 64 * 1024


class CoalescingStream(httpcore2.NetworkStream):
    """A connection whose writes wait for its next read (or close), then go in one send."""

    def __init__(self, stream: httpcore2.NetworkStream) -> None:
        self._stream = stream
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._write_timeout: float | None = None

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        self._held.append(buffer)
        self._held_bytes += len(buffer)
        self._write_timeout = timeout
        if self._held_bytes >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if self._held:
            data = self._held[0] if len(self._held) == 1 else b"".join(self._held)
            self._held, self._held_bytes = [], 0
            self._stream.write(data, self._write_timeout)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.flush()
        return self._stream.read(max_bytes, timeout)

    def close(self) -> None:
        self._held, self._held_bytes = [], 0  # a connection closed unread sends nothing more
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.NetworkStream:
        self.flush()
        return CoalescingStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class CoalescingBackend(httpcore2.NetworkBackend):
    """Opens connections through `inner` (httpcore's socket backend by default)."""

    def __init__(self, inner: httpcore2.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore2.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return CoalescingStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.NetworkStream:
        return CoalescingStream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class CoalescingTransport(httpx.HTTPTransport):
    """`httpx.HTTPTransport` (no proxy: the client mounts proxies from the environment on
    its own) whose connections coalesce their writes."""

    def __init__(
        self, limits: httpx.Limits, network_backend: httpcore2.NetworkBackend | None = None
    ) -> None:
        # Not HTTPTransport.__init__: it would build a pool (and a TLS context) to throw away;
        # its methods use nothing but `_pool`.
        self._pool = httpcore2.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=CoalescingBackend(network_backend),
        )
