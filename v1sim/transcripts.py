"""V1's per-session conversation history, as the simulator keeps it.

V1 stores a transcript per session and feeds the model the whole of it, so a session's calls
see each other's text and different sessions never do. The rules (see v1sim.server) live in
`Transcripts.begin` (what a run adds and what its model sees) and `Turn.finish` (the reply).
Everything here is bounded: sessions (least recently used evicted first), entries per session
(oldest dropped first), characters per text and in all transcripts together.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import TypedDict

QUEUED_MARKER = "[queued user message from a previous active turn]"
MAX_SESSIONS = 2_000
MAX_ENTRIES = 500
# Per text, in transcripts and in request records ("<role>: <text>" lines).
MAX_TEXT_CHARS = 4_096
# All transcripts together; the least recently used sessions go first beyond it.
MAX_TOTAL_CHARS = 16_000_000
# Per request record: the newest lines of what the model saw, up to this many characters.
MAX_INPUT_CHARS = 16_384


class Entry(TypedDict):
    role: str
    content: str


def clip(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def message_text(content: object) -> str:
    """Text of one message's content: a string or OpenAI content parts (non-text parts skipped)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict)]
        return "\n".join(p for p in parts if isinstance(p, str))
    return ""


def last_user_text(messages: object) -> str | None:
    """Text of the last user message, None if there is none."""
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message.get("content"))
    return None


def request_entries(messages: object) -> list[Entry]:
    """Every message of a request that has a role, as transcript entries."""
    if not isinstance(messages, list):
        return []
    return [
        Entry(role=m["role"], content=clip(message_text(m.get("content"))))
        for m in messages
        if isinstance(m, dict) and isinstance(m.get("role"), str)
    ]


def model_input(seen: list[Entry], budget: int = MAX_INPUT_CHARS) -> list[str]:
    """What a record keeps of a run's input: the newest `<role>: <text>` lines within budget."""
    lines: list[str] = []
    for entry in reversed(seen):
        line = clip(f"{entry['role']}: {entry['content']}")
        budget -= len(line)
        if budget < 0:
            break
        lines.append(line)
    lines.reverse()
    return lines


def _unanswered(entries: deque[Entry]) -> str | None:
    """The last user text that got no real reply (empty replies are aborted or failed runs)."""
    for entry in reversed(entries):
        if entry["role"] == "assistant" and not entry["content"]:
            continue
        return entry["content"] if entry["role"] == "user" else None
    return None


class _Transcript:
    __slots__ = ("chars", "entries")

    def __init__(self) -> None:
        self.entries: deque[Entry] = deque()
        self.chars = 0


class Turn:
    """One run's part of its session: what the model saw, and where the reply goes."""

    def __init__(
        self, store: Transcripts, session: str | None, transcript: _Transcript, seen: list[Entry]
    ) -> None:
        self._store = store
        self._session = session
        self._transcript = transcript
        self.seen = seen
        self._finished = False

    def finish(self, reply: str) -> None:
        """Record the run's answer: the full reply, or "" when it failed or was aborted."""
        if self._finished:
            return
        self._finished = True
        self._store.add(self._session, self._transcript, Entry(role="assistant", content=reply))


class Transcripts:
    """Transcripts of stable sessions; one-off sessions (key None) get a throwaway one."""

    def __init__(
        self,
        *,
        max_sessions: int = MAX_SESSIONS,
        max_entries: int = MAX_ENTRIES,
        max_total_chars: int = MAX_TOTAL_CHARS,
    ) -> None:
        self._max_sessions = max_sessions
        self._max_entries = max_entries
        self._max_total_chars = max_total_chars
        self._sessions: OrderedDict[str, _Transcript] = OrderedDict()
        self._chars = 0

    def __len__(self) -> int:
        return len(self._sessions)

    def begin(self, session: str | None, messages: object) -> Turn:
        """Start a run: add the request's messages, return what the model sees.

        An empty transcript takes every message of the request (a client may seed a session
        with earlier history); a non-empty one only the last user message, since V1 keeps the
        history itself. A user text left without a reply is shown to the model again, wrapped,
        before the new message; the transcript itself stays a plain list.
        """
        transcript = self._touch(session) if session is not None else _Transcript()
        if not transcript.entries:
            for entry in request_entries(messages):
                self.add(session, transcript, entry)
            return Turn(self, session, transcript, list(transcript.entries))
        queued = _unanswered(transcript.entries)
        text = clip(last_user_text(messages) or "")
        self.add(session, transcript, Entry(role="user", content=text))
        seen = list(transcript.entries)
        if queued is not None:
            wrapped = Entry(role="user", content=clip(f"{QUEUED_MARKER} {queued}"))
            seen.insert(len(seen) - 1, wrapped)
        return Turn(self, session, transcript, seen)

    def get(self, session: str) -> list[Entry] | None:
        transcript = self._sessions.get(session)
        return list(transcript.entries) if transcript is not None else None

    def clear(self) -> None:
        self._sessions.clear()
        self._chars = 0

    def _touch(self, session: str) -> _Transcript:
        transcript = self._sessions.get(session)
        if transcript is None:
            transcript = self._sessions[session] = _Transcript()
            while len(self._sessions) > self._max_sessions:
                self._evict_oldest()
        else:
            self._sessions.move_to_end(session)
        return transcript

    def add(self, session: str | None, transcript: _Transcript, entry: Entry) -> None:
        before = transcript.chars
        transcript.entries.append(entry)
        transcript.chars += len(entry["content"])
        while len(transcript.entries) > self._max_entries:
            transcript.chars -= len(transcript.entries.popleft()["content"])
        # A transcript evicted or reset while its run went on is no longer counted.
        if session is None or self._sessions.get(session) is not transcript:
            return
        self._chars += transcript.chars - before
        while self._chars > self._max_total_chars and len(self._sessions) > 1:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        _, transcript = self._sessions.popitem(last=False)
        self._chars -= transcript.chars
