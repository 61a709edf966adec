"""What the `openclaw` command shows: a followed task live, tasks, errors, exit codes.

stdout carries only the payload (the answer's text, a task id, JSON lines); states, timings
and errors go to stderr, so `openclaw submit "..." --follow > answer.txt` keeps the answer
clean. On a terminal a live view shows the tail of the text above a status line.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import TextIO

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.table import Table
from rich.text import Text

from openclaw_client.models import Event, Task

# 2 is click's usage error; 1 a failed request (API or connection error).
EXIT_REQUEST_FAILED = 1
EXIT_BY_STATE = {"succeeded": 0, "failed": 3, "cancelled": 4, "timed_out": 5}
EXIT_WAIT_TIMEOUT = 6
EXIT_INTERRUPTED = 130

_STYLE = {"succeeded": "bold green", "failed": "bold red", "cancelled": "bold yellow"}
_STYLE["timed_out"] = "bold red"
_MARK = {"succeeded": "✔", "failed": "✘", "cancelled": "■", "timed_out": "⏱"}
_STATE_OF_EVENT = {"started": "running", "progress": "running", "resumed": "queued"}


def exit_code(state: str) -> int:
    return EXIT_BY_STATE.get(state, EXIT_REQUEST_FAILED)


def _seconds(value: float) -> str:
    return f"{value:.1f}s" if value < 120 else f"{int(value // 60)}m{int(value % 60):02d}s"


class FollowView:
    """Shows one task's events as they come; `close` prints the final state line."""

    def __init__(self, out: TextIO, err: Console, *, live: bool) -> None:
        self.out, self.err = out, err
        self.text = ""
        self.state, self.detail = "connecting", ""
        self.t0 = time.time()
        self.last: Event | None = None
        self._live = Live(self, console=err, refresh_per_second=8, transient=True) if live else None
        if self._live is not None:
            self._live.start()

    def show(self, event: Event) -> None:
        if self.last is None and event.seq == 1:
            self.t0 = event.ts  # elapsed counts from submission, not from when we joined
        self.last = event
        if event.type == "progress":
            self.text += event.delta
            if self._live is None:
                self.out.write(event.delta)
                self.out.flush()
            return
        state = _STATE_OF_EVENT.get(event.type, event.type)
        detail = f"attempt {event.data['attempt']}" if "attempt" in event.data else ""
        if (state, detail) != (self.state, self.detail):
            self.state, self.detail = state, detail
            if self._live is None and not event.terminal:
                self.err.print(Text(self._status(event.ts), style="dim"))

    def _status(self, now: float) -> str:
        parts = [self.state, self.detail, _seconds(max(now - self.t0, 0.0))]
        return " · ".join(part for part in parts if part)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # Only the tail fits on screen; the whole text is printed once at the end.
        room = max(console.height - 2, 1)
        tail = Text(self.text[-room * options.max_width :]).wrap(console, options.max_width)
        yield from list(tail)[-room:]
        yield Text(f"⠿ {self._status(time.time())}", style="cyan")

    def close(self) -> int:
        """Stop the live view, print the final line; the exit code for how it ended."""
        self.abandon()
        if self._live is not None:
            self.out.write(self.text)  # once, whole, into the scrollback
        if self.text and not self.text.endswith("\n"):
            self.out.write("\n")
        self.out.flush()
        end = self.last
        if end is None or not end.terminal:
            return EXIT_REQUEST_FAILED
        self.err.print(final_line(end.type, end.ts - self.t0, end.data))
        return exit_code(end.type)

    def abandon(self) -> None:
        if self._live is not None and self._live.is_started:
            self._live.stop()


def task_final_line(task: Task) -> Text:
    end = task.finished_at.timestamp() if task.finished_at else time.time()
    error = task.error.model_dump() if task.error else None
    return final_line(task.state, end - task.created_at.timestamp(), {"error": error})


def final_line(state: str, elapsed: float, data: dict[str, object]) -> Text:
    line = Text(f"{_MARK.get(state, '•')} {state} ", style=_STYLE.get(state, "bold"))
    line.append(f"after {_seconds(elapsed)}")
    error = data.get("error")
    if isinstance(error, dict) and error.get("message"):
        line.append(f": {error.get('type')}: {error.get('message')}")
    elif data.get("reason"):
        line.append(f": {data['reason']}")
    return line


def write_json_line(out: TextIO, payload: str) -> None:
    out.write(payload + "\n")
    out.flush()


def task_table(task: Task) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    style = _STYLE.get(task.state, "")
    table.add_row("task", task.task_id)
    table.add_row("state", Text(task.state, style=style))
    table.add_row("queue", f"{task.queue} (priority {task.priority})")
    table.add_row("estimate", f"{task.estimated_seconds:g}s ({task.estimate_source})")
    table.add_row("agent / session", f"{task.agent_id} / {task.session_id or '-'}")
    table.add_row("attempts", str(task.attempts))
    for name in ("created_at", "started_at", "finished_at"):
        value = getattr(task, name)
        if value is not None:
            table.add_row(name.replace("_at", ""), value.isoformat(timespec="seconds"))
    if task.error is not None:
        table.add_row("error", Text(f"{task.error.type}: {task.error.message}", style="red"))
    return table


def task_body(task: Task) -> str:
    """The text worth printing on stdout: the result, else the partial output."""
    if task.result is not None:
        return task.result.content
    return task.partial or ""


def tasks_table(tasks: Iterable[Task]) -> Table:
    table = Table(box=None)
    table.add_column("task", no_wrap=True, min_width=36)  # ids are never cut
    for name in ("state", "queue", "prio", "session", "created"):
        table.add_column(name)
    for task in tasks:
        table.add_row(
            task.task_id,
            Text(task.state, style=_STYLE.get(task.state, "")),
            task.queue,
            str(task.priority),
            task.session_id or "-",
            task.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S"),
        )
    return table


def is_terminal() -> bool:
    return sys.stdout.isatty() and sys.stderr.isatty()
