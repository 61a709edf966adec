"""Headless Chromium in a network of its own, where nothing but 127.0.0.1 answers.

`unshare --net` gives Chromium a new network namespace whose only interface is loopback:
no other host can be reached, not even this machine's own services. The gateway under test
still can, through a Unix socket (the filesystem is shared): outside, `UnixToTcp` relays
the socket to the gateway's port; inside, `python -m tests.offline_browser SOCKET PORT --
CHROMIUM ARGS...` listens on 127.0.0.1:PORT, relays to the socket, runs Chromium and
prints what it printed (the DOM with `--dump-dom`).
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
BROWSER_TIMEOUT = 90.0


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(65_536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close: the other direction may still be answering


async def _relay(
    connect: Connect, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        target_reader, target_writer = await connect()
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pipe(reader, target_writer), _pipe(target_reader, writer))
    for stream in (writer, target_writer):
        stream.close()


class UnixToTcp:
    """Outside the namespace: connections to the Unix socket `path` go to 127.0.0.1:port."""

    def __init__(self, path: Path, port: int) -> None:
        self.path = path
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> UnixToTcp:
        async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
            return await asyncio.open_connection("127.0.0.1", self.port)

        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_unix_server(lambda r, w: _relay(connect, r, w), self.path)

        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


async def _inside(socket_path: str, port: int, command: list[str]) -> int:
    """Inside the namespace: 127.0.0.1:port relayed to the socket, and the browser."""

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_unix_connection(socket_path)

    server = await asyncio.start_server(lambda r, w: _relay(connect, r, w), "127.0.0.1", port)
    async with server:
        browser = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            out, _ = await asyncio.wait_for(browser.communicate(), BROWSER_TIMEOUT)
        except TimeoutError:
            browser.kill()
            await browser.wait()
            print(f"browser still running after {BROWSER_TIMEOUT} s", file=sys.stderr)
            return 124
        sys.stdout.write(out.decode("utf-8", "replace"))
        return browser.returncode or 0


if __name__ == "__main__":
    socket_arg, port_arg, separator, *browser_command = sys.argv[1:]
    assert separator == "--", "usage: SOCKET PORT -- COMMAND..."
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)  # a new namespace: lo down
    sys.exit(asyncio.run(_inside(socket_arg, int(port_arg), browser_command)))
