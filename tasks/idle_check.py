"""httpcore's idle-connection check without gevent's cooperative `poll`.

Before every request it sends and after every response it ends, httpcore's pool asks each
idle keep-alive connection whether its socket is readable (`_utils.is_socket_readable`: a
server that closed it). Under gevent's monkey patching that is gevent's `poll` object
(about 19 us a call here, measured) and a worker with 50 pooled V1 connections made about
100 such checks per V1 call: ~2 ms of CPU per task. The check polls with timeout 0, so
the original `poll` never blocks the hub: it is handed to httpcore instead (about 1.6 us).
"""

from __future__ import annotations

import select
import types


def use_native_poll() -> bool:
    """Give httpcore's readability check the unpatched `poll`. False: nothing to do (no
    gevent patching) or httpcore no longer has the shape this relies on (then its own
    check stays: slower, equally correct)."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    if not monkey.is_module_patched("select"):
        return False
    try:
        from httpcore import _utils
    except ImportError:  # pragma: no cover - httpx depends on httpcore
        return False
    if getattr(_utils, "select", None) is not select or not hasattr(_utils, "is_socket_readable"):
        return isinstance(getattr(_utils, "select", None), types.SimpleNamespace)
    _utils.select = types.SimpleNamespace(  # type: ignore[attr-defined,assignment]
        poll=monkey.get_original("select", "poll"),
        select=monkey.get_original("select", "select"),
        POLLIN=select.POLLIN,
    )
    return True
