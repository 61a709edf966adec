"""Parsing of `[sim:key=value]` directives embedded in the last user message.

Directives let a test script one call's behaviour (latency, length, failures) through the
same message text V2 forwards untouched, so no side channel into the simulator is needed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# Keys are lower-case identifiers; a value never contains `]` or whitespace.
_DIRECTIVE = re.compile(r"\[sim:([A-Za-z_][A-Za-z0-9_]*)(?:=([^\]\s]*))?\]")
_FAIL = re.compile(r"(\d{3})(?:x(\d+))?")
_TAG = re.compile(r"[A-Za-z0-9_.:-]{1,200}")

DEFAULT_CHUNKS = 5
DEFAULT_CHUNK_DELAY = 0.01
# Bounds keep a typo from tying up the simulator (a day-long delay, a billion chunks).
MAX_SECONDS = 86_400.0
MAX_CHUNKS = 100_000
_KNOWN = frozenset({"delay", "chunk_delay", "chunks", "error_after", "fail", "tag"})


@dataclass(frozen=True, slots=True)
class Directives:
    """What one call asked the simulator to do; defaults give a quick, successful answer."""

    delay: float = 0.0
    chunks: int = DEFAULT_CHUNKS
    chunk_delay: float = DEFAULT_CHUNK_DELAY
    fail_status: int | None = None
    # None with a fail_status: every attempt fails.
    fail_times: int | None = None
    error_after: int | None = None
    # With error_after: only the first N attempts of this message get the error chunk
    # (`[sim:error_after=0x1]`); None: every attempt does.
    error_times: int | None = None
    tag: str | None = None
    # Names only: values may carry user text, which records keep only in `model_input`.
    unknown: tuple[str, ...] = field(default_factory=tuple)
    invalid: tuple[str, ...] = field(default_factory=tuple)


def _seconds(value: str) -> float | None:
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and 0.0 <= seconds <= MAX_SECONDS else None


def _count(value: str, maximum: int = MAX_CHUNKS) -> int | None:
    return int(value) if value.isdigit() and int(value) <= maximum else None


def _error_after(value: str) -> tuple[int, int | None] | None:
    count, sep, times = value.partition("x")
    after = _count(count)
    if after is None or (sep and not times.isdigit()):
        return None
    return after, (int(times) if sep else None)


def _fail(value: str) -> tuple[int, int | None] | None:
    match = _FAIL.fullmatch(value)
    if match is None or not 400 <= int(match.group(1)) <= 599:
        return None
    times = match.group(2)
    return int(match.group(1)), (int(times) if times is not None else None)


def parse_directives(text: str) -> Directives:
    """Read every directive in `text`; later ones win, bad values are ignored and noted."""
    delay, chunk_delay = 0.0, DEFAULT_CHUNK_DELAY
    chunks, error_after = DEFAULT_CHUNKS, None
    error_times: int | None = None
    fail: tuple[int, int | None] = (0, None)
    tag: str | None = None
    unknown: list[str] = []
    invalid: list[str] = []
    for match in _DIRECTIVE.finditer(text):
        key, raw = match.group(1).lower(), match.group(2) or ""
        if key == "delay" and (seconds := _seconds(raw)) is not None:
            delay = seconds
        elif key == "chunk_delay" and (seconds := _seconds(raw)) is not None:
            chunk_delay = seconds
        elif key == "chunks" and (count := _count(raw)) is not None:
            chunks = count
        elif key == "error_after" and (parsed_error := _error_after(raw)) is not None:
            error_after, error_times = parsed_error
        elif key == "fail" and (parsed := _fail(raw)) is not None:
            fail = parsed
        elif key == "tag" and _TAG.fullmatch(raw):
            tag = raw
        else:
            names = invalid if key in _KNOWN else unknown
            if key not in names:
                names.append(key)
    return Directives(
        delay=delay,
        chunks=chunks,
        chunk_delay=chunk_delay,
        fail_status=fail[0] or None,
        fail_times=fail[1],
        error_after=error_after,
        error_times=error_times,
        tag=tag,
        unknown=tuple(unknown),
        invalid=tuple(invalid),
    )
