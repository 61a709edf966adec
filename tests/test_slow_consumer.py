"""A WebSocket client that stops reading, through a real gateway process: the gateway keeps
at most STREAM_BUFFER of its events, then closes it with 4008; the client resumes with its
last seqs and gets exactly the rest (nothing lost, nothing twice)."""

from __future__ import annotations

import json
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Close, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from deploy.embedded_valkey import free_port
from tests.event_clients import TERMINAL, ws_connect, ws_events
from tests.harness import API_KEY, ManagedProcess, System, submit, tag, wait_terminal

BIG = 12_000  # deltas of the first task: ~200 kB of events, far beyond the socket buffers
STREAM_BUFFER = 5


@pytest.fixture
def slow_gateway(system: System) -> Iterator[str]:
    """A second gateway replica of the shared system: a small STREAM_BUFFER and send buffer."""
    port = free_port()
    proc = ManagedProcess(
        "small-buffer-gateway",
        [sys.executable, "-m", "tests.small_buffer_gateway"],
        system.env(GATEWAY_PORT=str(port), STREAM_BUFFER=str(STREAM_BUFFER)),
        system.workdir / f"small-buffer-gateway-{uuid.uuid4().hex[:6]}.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_for_http(f"{url}/readyz", 30)
        yield url
    finally:
        proc.stop()


class StalledClient:
    """A WebSocket client on a socket the test reads only when it chooses to (websockets'
    sans-I/O protocol): until then nothing is read, so the gateway's sends back up. (The
    websockets client's own reader thread buffered ~200 kB of messages meanwhile.)"""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A fixed 4 KiB receive buffer (Linux would let an unread one take ~128 kB).
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.settimeout(10)
        self.sock.connect((host, int(port)))
        self.protocol = ClientProtocol(parse_uri(f"ws://{host}:{port}/v1/ws"))
        request = self.protocol.connect()
        request.headers["Authorization"] = f"Bearer {API_KEY}"
        self.protocol.send_request(request)
        self._flush()
        while self.protocol.state is State.CONNECTING:
            self._read()
        assert self.protocol.state is State.OPEN, self.protocol.handshake_exc

    def _flush(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.sock.sendall(chunk)

    def _read(self) -> list[Frame]:
        data = self.sock.recv(65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        self._flush()  # pongs, the closing handshake
        return [e for e in self.protocol.events_received() if isinstance(e, Frame)]

    def send(self, message: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps(message).encode())
        self._flush()

    def read_until_closed(self) -> tuple[list[dict[str, Any]], int | None]:
        """Every event received, then the close code (None: not closed within 30 s)."""
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                frames = self._read()
            except TimeoutError:  # 10 s without a byte
                break
            for frame in frames:
                if frame.opcode is Opcode.CLOSE:
                    self.sock.close()
                    return events, Close.parse(frame.data).code
                if frame.opcode is Opcode.TEXT:
                    message = json.loads(bytes(frame.data))
                    if "seq" in message:
                        events.append(message)
        return events, None


def test_a_client_that_stops_reading_is_cut_off_and_resumes_exactly(
    system: System, slow_gateway: str
) -> None:
    session = f"slow-{tag()}"
    ws = StalledClient(slow_gateway)
    ws.send({"type": "subscribe", "session_id": session})
    # The client reads nothing more while both tasks run to their end.
    with system.client() as api:
        big = submit(api, f"big [sim:chunks={BIG}] [sim:chunk_delay=0]", session_id=session)
        big_done = wait_terminal(api, big["task_id"], timeout=60)
        small = submit(api, "small [sim:chunks=40] [sim:chunk_delay=0.02]", session_id=session)
        small_done = wait_terminal(api, small["task_id"])
    seen, code = ws.read_until_closed()
    assert code == 4008, f"not cut off (close code {code}); got {len(seen)} events"
    cursors = {t: max((e["seq"] for e in seen if e["task_id"] == t), default=0)
               for t in (big["task_id"], small["task_id"])}  # fmt: skip
    # Held for it: the event being sent when its socket backed up, then STREAM_BUFFER more.
    assert cursors[small["task_id"]] <= STREAM_BUFFER + 1, cursors
    with ws_connect(slow_gateway) as again:
        again.send(json.dumps({"type": "subscribe", "session_id": session, "replay": True,
                               "cursors": cursors}))  # fmt: skip
        unfinished = {t for t in cursors if not any(
            e["task_id"] == t and e["type"] in TERMINAL for e in seen)}  # fmt: skip
        rest = ws_events(again, until_terminal=unfinished)
    for task_id, done in ((big["task_id"], big_done), (small["task_id"], small_done)):
        mine = [e for e in seen + rest if e["task_id"] == task_id]
        assert [e["seq"] for e in mine] == list(range(1, len(mine) + 1)), "gap or duplicate"
        assert mine[-1]["type"] in TERMINAL and mine[-1]["data"]["result"] == done["result"]
        text = "".join(e["data"]["delta"] for e in mine if e["type"] == "progress")
        assert text == done["result"]["content"]
