"""A task's event log as the Responses API's semantic stream events.

`sequence_number` is derived from the task event it comes from: `seq * SLOTS + position`
(one task event gives at most 7 semantic events). It depends only on the log, never on
which gateway replica or connection renders it, and it survives the log's bounded
trimming (a count from the first event would shift once early events are trimmed). A
client resuming with `starting_after=N` gets exactly the events numbered above N.

Mapping (the item is the one assistant message, opened by the attempt's first output):
queued -> response.created + response.queued; started -> response.in_progress;
retrying -> response.queued; progress -> [output_item.added, content_part.added] +
output_text.delta; succeeded -> [opening] + output_text.done, content_part.done,
output_item.done, response.completed; failed / cancelled / timed_out -> [the closing
three, if output had started] + response.failed / response.cancelled /
response.incomplete. paused / resumed change nothing a Response shows.
"""

from __future__ import annotations

from typing import Any

import orjson

from app.openai_shapes import ResponseBase, message_item, response_object, text_part
from taskrecord.event_log import Event
from taskrecord.states import EventType

SLOTS = 10
TERMINAL_STATUS: dict[str, tuple[str, str]] = {  # by event type
    EventType.SUCCEEDED: ("completed", "response.completed"),
    EventType.FAILED: ("failed", "response.failed"),
    EventType.CANCELLED: ("cancelled", "response.cancelled"),
    EventType.TIMED_OUT: ("incomplete", "response.incomplete"),
}


def first_seq(starting_after: int) -> int:
    """The first task event that can give a semantic event numbered above `starting_after`."""
    return starting_after // SLOTS


class ResponseEvents:
    """Feed it a task's events in seq order (from the first); it keeps whether the message
    item is open, which is all the state the mapping needs."""

    def __init__(self, base: ResponseBase) -> None:
        self.base = base
        self.opened = False

    def translate(self, event: Event) -> list[dict[str, Any]]:
        data: dict[str, Any] = orjson.loads(event.raw).get("data") or {}
        out: list[tuple[str, dict[str, Any]]] = []
        kind = event.type
        if kind == EventType.QUEUED:
            out += [self._status("response.created", "queued"),
                    self._status("response.queued", "queued")]  # fmt: skip
        elif kind == EventType.STARTED:
            out.append(self._status("response.in_progress", "in_progress"))
        elif kind == EventType.RETRYING:
            self.opened = False  # a new attempt; retries happen only before output
            out.append(self._status("response.queued", "queued"))
        elif kind == EventType.PROGRESS:
            out += self._open()
            out.append(self._delta(str(data.get("delta", ""))))
        elif kind in TERMINAL_STATUS:
            out += self._end(kind, data)
        return [
            {"type": name, **payload, "sequence_number": event.seq * SLOTS + i}
            for i, (name, payload) in enumerate(out)
        ]

    def _status(self, name: str, status: str) -> tuple[str, dict[str, Any]]:
        return name, {"response": response_object(self.base, status)}

    def _delta(self, text: str) -> tuple[str, dict[str, Any]]:
        return "response.output_text.delta", {**self._at(), "delta": text, "logprobs": []}

    def _item(self, name: str, status: str, text: str | None) -> tuple[str, dict[str, Any]]:
        return name, {"output_index": 0, "item": message_item(self.base, status, text)}

    def _at(self) -> dict[str, Any]:
        return {"item_id": self.base.item_id, "output_index": 0, "content_index": 0}

    def _open(self) -> list[tuple[str, dict[str, Any]]]:
        if self.opened:
            return []
        self.opened = True
        return [
            self._item("response.output_item.added", "in_progress", None),
            ("response.content_part.added", {**self._at(), "part": text_part("")}),
        ]

    def _end(self, kind: str, data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        status, name = TERMINAL_STATUS[kind]
        out: list[tuple[str, dict[str, Any]]] = []
        if kind == EventType.SUCCEEDED:
            result = data.get("result") or {}
            text: str | None = str(result.get("content") or "")
            usage = result.get("usage")
            if not self.opened:  # an answer that came without progress: show it whole
                out += self._open()
                if text:
                    out.append(self._delta(text))
        else:  # the output so far, if there was any (the attempt's partial text)
            text, usage = str(data.get("partial") or "") if self.opened else None, None
        if text is not None:
            item_status = "completed" if kind == EventType.SUCCEEDED else "incomplete"
            out += [
                ("response.output_text.done", {**self._at(), "text": text, "logprobs": []}),
                ("response.content_part.done", {**self._at(), "part": text_part(text)}),
                self._item("response.output_item.done", item_status, text),
            ]
        self.opened = False
        error = data.get("error") if kind == EventType.FAILED else None
        out.append((name, {"response": response_object(self.base, status, text, usage, error)}))
        return out
