"""`tasks.idle_check`: httpcore2's idle-connection check and redis-py's readiness check use
the unpatched `poll` in a gevent worker, and still tell an open idle socket from one with
data waiting or one its server closed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tasks.idle_check import use_native_poll

_IN_A_GEVENT_PROCESS = textwrap.dedent(
    """
    from gevent import monkey
    monkey.patch_all()
    import socket
    from httpcore2 import _utils
    from tasks.idle_check import use_native_poll

    assert use_native_poll() and use_native_poll()  # applied, and a second call is harmless
    assert _utils.select.poll is monkey.get_original("select", "poll")
    ours, server = socket.socketpair()
    assert not _utils.is_socket_readable(ours)  # idle and open: keep it
    server.close()
    assert _utils.is_socket_readable(ours)  # the server closed it: httpcore2 drops it

    from redis._parsers import hiredis
    assert hiredis._socket_can_read.__module__ == "tasks.idle_check"
    ours, server = socket.socketpair()
    assert not hiredis._socket_can_read(ours, 0)  # nothing stray: redis-py sends on it
    server.send(b"+stray")
    assert hiredis._socket_can_read(ours, 0)  # data left: redis-py reconnects
    ours.recv(16)
    assert not hiredis._socket_can_read(ours, 0.01)  # with a timeout: redis-py's own check
    server.close()
    assert hiredis._socket_can_read(ours, 0)
    print("ok")
    """
)


def test_a_gevent_process_checks_idle_sockets_with_the_native_poll() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _IN_A_GEVENT_PROCESS], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_without_gevent_patching_nothing_changes() -> None:
    from httpcore2 import _utils

    before = _utils.select  # type: ignore[attr-defined]
    assert use_native_poll() is False
    assert _utils.select is before  # type: ignore[attr-defined]
