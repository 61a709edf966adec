"""Clients that follow tasks' events over SSE and WebSocket and, when their gateway goes
away, reconnect to the next one with their cursors (the last seq each has seen)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tasks.v1_client import sse_lines
from testbed.system import API_KEY
from tests_cluster.observe import TERMINAL

HEADERS = {"Authorization": f"Bearer {API_KEY}"}


class Follower:
    """Events received per task, in arrival order, and when it first switched gateway."""

    def __init__(self, gateways: list[str], task_ids: list[str], deadline: float) -> None:
        self.gateways = gateways
        self.task_ids = task_ids
        self.deadline = deadline
        self.received: dict[str, list[dict[str, Any]]] = {t: [] for t in task_ids}
        self.reconnects = 0
        self.first_event_after_switch: float | None = None

    def cursor(self, task_id: str) -> int:
        got = self.received[task_id]
        return int(got[-1]["seq"]) if got else 0

    def ended(self, task_id: str) -> bool:
        got = self.received[task_id]
        return bool(got) and got[-1]["type"] in TERMINAL

    def take(self, event: dict[str, Any]) -> None:
        if self.reconnects and self.first_event_after_switch is None:
            self.first_event_after_switch = time.time()
        self.received[event["task_id"]].append(event)

    def gateway(self) -> str:
        return self.gateways[min(self.reconnects, len(self.gateways) - 1)]


class SseFollower(Follower):
    """One task over SSE (`Last-Event-ID` carries the cursor on reconnect)."""

    def run(self) -> None:
        (task_id,) = self.task_ids
        while not self.ended(task_id) and time.time() < self.deadline:
            headers = {**HEADERS, "Last-Event-ID": str(self.cursor(task_id))}
            url = f"{self.gateway()}/v1/tasks/{task_id}/events"
            try:
                with httpx.stream("GET", url, headers=headers, timeout=5, trust_env=False) as r:
                    r.raise_for_status()
                    self._read(r)
            except httpx.HTTPError:
                pass
            if not self.ended(task_id):
                self.reconnects += 1

    def _read(self, response: httpx.Response) -> None:
        data = None
        for line in sse_lines(response.iter_bytes()):
            if line.startswith("data:"):
                data = line[5:].strip()
            elif line == "" and data is not None:
                self.take(json.loads(data))
                data = None


class WsFollower(Follower):
    """All tasks on one WebSocket; on reconnect each is subscribed again `after_seq`."""

    def run(self) -> None:
        while not all(map(self.ended, self.task_ids)) and time.time() < self.deadline:
            url = self.gateway().replace("http://", "ws://") + "/v1/ws"
            try:
                with connect(url, additional_headers=HEADERS, open_timeout=5) as ws:
                    for task_id in self.task_ids:
                        if not self.ended(task_id):
                            ws.send(json.dumps({"type": "subscribe", "task_id": task_id,
                                                "after_seq": self.cursor(task_id)}))  # fmt: skip
                    while not all(map(self.ended, self.task_ids)):
                        message = json.loads(ws.recv(timeout=5))
                        if "seq" in message:
                            self.take(message)
            except (OSError, TimeoutError, ConnectionClosed):
                pass
            if not all(map(self.ended, self.task_ids)):
                self.reconnects += 1
