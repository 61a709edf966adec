"""httpcore2's and redis-py's idle-connection checks without gevent's cooperative `poll`.

Before every request it sends and after every response it ends, httpcore2's pool (under
the V1 client's httpx2) asks each idle keep-alive connection whether its socket is
readable (`_utils.is_socket_readable`: a server that closed it). Under gevent's monkey
patching that is gevent's `poll` object (about 19 us a call here, measured) and a worker
with 50 pooled V1 connections made about 100 such checks per V1 call: ~2 ms of CPU per
task. The check polls with timeout 0, so the original `poll` never blocks the hub: it is
handed to httpcore2 instead (about 1.6 us).

redis-py does the same before every command, on the connection it takes from its pool
(`ConnectionPool.get_connection` -> hiredis parser's `_socket_can_read`, a zero-timeout
`poll`): ~12 us with gevent's against ~0.7 us, for each of the ~8 commands a task costs
(kombu's fetch, unacked record and ack, our scripts, events; issue 13's py-spy: ~7 % of a
short task's worker CPU). Its checks with a timeout keep redis-py's own function.
"""

from __future__ import annotations

import select
import types
from collections.abc import Callable
from typing import Any


def use_native_poll() -> bool:
    """Give httpcore2's and redis-py's readability checks the unpatched `poll`. False:
    nothing to do (no gevent patching) or httpcore2 no longer has the shape this relies on
    (then its own check stays: slower, equally correct)."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    if not monkey.is_module_patched("select"):
        return False
    native_poll = monkey.get_original("select", "poll")
    _redis_zero_timeout_checks(native_poll)
    try:
        from httpcore2 import _utils
    except ImportError:  # pragma: no cover - httpx2 depends on httpcore2
        return False
    if getattr(_utils, "select", None) is not select or not hasattr(_utils, "is_socket_readable"):
        return isinstance(getattr(_utils, "select", None), types.SimpleNamespace)
    _utils.select = types.SimpleNamespace(  # type: ignore[attr-defined,assignment]
        poll=native_poll,
        select=monkey.get_original("select", "select"),
        POLLIN=select.POLLIN,
    )
    return True


def _redis_zero_timeout_checks(native_poll: Callable[[], Any]) -> None:
    """redis-py's zero-timeout readiness check with `native_poll` (once; a redis-py
    without this function is left as it is)."""
    from redis._parsers import hiredis

    current = getattr(hiredis, "_socket_can_read", None)
    if current is None or getattr(current, "__module__", "") == __name__:
        return

    def _socket_can_read(sock: Any, timeout: float) -> bool:
        if timeout != 0:
            return bool(current(sock, timeout))
        if hasattr(sock, "pending") and sock.pending():  # TLS: bytes decrypted already
            return True
        poller = native_poll()
        poller.register(sock.fileno(), select.POLLIN)
        # POLLHUP/POLLERR come back too: a closed socket counts as readable, as before.
        return bool(poller.poll(0))

    hiredis._socket_can_read = _socket_can_read
