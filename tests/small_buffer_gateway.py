"""`python -m tests.small_buffer_gateway`: the real gateway (`app.main.create_app` under
uvicorn, as `python -m app` runs it) on a listening socket with a small kernel send buffer.

Linux grows a TCP socket's send buffer to megabytes on loopback, so a client that stops
reading would need megabytes of events before the gateway itself notices; a fixed 16 KiB
buffer (what a slow link amounts to) lets a test reach the gateway's own bound
(STREAM_BUFFER) with a few hundred kilobytes. Accepted sockets inherit the listener's size.
"""

from __future__ import annotations

import logging
import socket

import uvicorn

from app.main import create_app
from taskrecord.settings import get_settings

SEND_BUFFER = 8192  # the kernel doubles it


def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    sock.bind((settings.gateway_host, settings.gateway_port))
    sock.listen(128)
    config = uvicorn.Config(create_app(settings), access_log=False, log_level="info")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
