"""`openclaw`: submit, read, steer and follow tasks from a shell (typer + rich).

Exit codes: 0 done (a waited-for task succeeded), 1 the request failed (API or connection
error), 2 wrong usage, 3 the task failed, 4 it was cancelled, 5 it timed out, 6 `--timeout`
passed before it ended, 130 interrupted. `--json` prints one JSON object per line on stdout
(a task, or an event) and nothing else there.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Annotated

import typer
from rich.console import Console

from openclaw_client import cli_view as view
from openclaw_client.errors import APIError, OpenClawError, WaitTimeout
from openclaw_client.sync_client import OpenClaw

app = typer.Typer(
    name="openclaw",
    help="Submit tasks to an OpenClaw V2 gateway, follow them live, steer them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, soft_wrap=True)  # messages stay one line, for grep
# Piped output is not cut to 80 columns (ids and JSON stay whole).
out = Console(width=None if sys.stdout.isatty() else 4096)

TaskId = Annotated[str, typer.Argument(help="The task id.", show_default=False)]
Json = Annotated[bool, typer.Option("--json", help="One JSON object per line, nothing else.")]
Timeout = Annotated[
    float | None, typer.Option("--timeout", help="Give up waiting after this many seconds.")
]


@dataclass
class Target:
    url: str | None
    api_key: str | None


@app.callback()
def root(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option("--url", envvar="OPENCLAW_URL", help="Gateway URL.")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="OPENCLAW_API_KEY", help="API key.", show_default=False),
    ] = None,
) -> None:
    ctx.obj = Target(url, api_key)


@contextlib.contextmanager
def client(ctx: typer.Context, json_out: bool) -> Iterator[OpenClaw]:
    """A client whose errors become a message on stderr and an exit code."""
    target: Target = ctx.obj
    try:
        with OpenClaw(target.url, target.api_key) as oc:
            yield oc
    except WaitTimeout as exc:
        _report(exc, json_out)
        raise typer.Exit(view.EXIT_WAIT_TIMEOUT) from None
    except OpenClawError as exc:
        _report(exc, json_out)
        raise typer.Exit(view.EXIT_REQUEST_FAILED) from None


def _report(exc: OpenClawError, json_out: bool) -> None:
    if json_out:
        error = {"type": getattr(exc, "type", "timeout"), "message": str(exc)}
        if isinstance(exc, APIError):
            error.update(message=exc.message, status=exc.status, **exc.details)
        sys.stderr.write(json.dumps({"error": error}) + "\n")
    else:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)


def _follow(oc: OpenClaw, task_id: str, after: int, timeout: float | None, json_out: bool) -> int:
    if json_out:
        for event in oc.follow(task_id, after, timeout=timeout):
            view.write_json_line(sys.stdout, event.model_dump_json())
            if event.terminal:
                return view.exit_code(event.type)
        return view.EXIT_REQUEST_FAILED
    shown = view.FollowView(sys.stdout, err, live=view.is_terminal())
    try:
        for event in oc.follow(task_id, after, timeout=timeout):
            shown.show(event)
    except KeyboardInterrupt:
        shown.abandon()
        err.print(f"stopped following; the task goes on: openclaw follow {task_id}")
        return view.EXIT_INTERRUPTED
    except BaseException:
        shown.abandon()
        raise
    return shown.close()


def _metadata(pairs: list[str]) -> dict[str, str] | None:
    if not pairs:
        return None
    bad = [pair for pair in pairs if "=" not in pair]
    if bad:
        raise typer.BadParameter(f"expected KEY=VALUE, got {bad[0]!r}", param_hint="--meta")
    return dict(pair.split("=", 1) for pair in pairs)


@app.command()
def submit(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="The message ('-' reads it from stdin).")],
    session: Annotated[str | None, typer.Option("--session", "-s", help="Session id.")] = None,
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="V1 agent id.")] = None,
    priority: Annotated[int | None, typer.Option("--priority", "-p", min=0, max=10)] = None,
    estimate: Annotated[
        float | None, typer.Option("--estimate", help="Expected run time (s); picks the queue.")
    ] = None,
    time_limit: Annotated[
        int | None, typer.Option("--time-limit", help="Run-time limit (s).", min=1)
    ] = None,
    meta: Annotated[list[str], typer.Option("--meta", "-m", help="KEY=VALUE, repeatable.")] = [],  # noqa: B006
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Follow it until it ends.")
    ] = False,
    timeout: Timeout = None,
    json_out: Json = False,
) -> None:
    """Submit a task: prints its id (or, with --follow, its answer as it streams)."""
    message = sys.stdin.read() if text == "-" else text
    with client(ctx, json_out) as oc:
        task = oc.submit(
            message, session_id=session, agent_id=agent, priority=priority,
            estimated_seconds=estimate, timeout_seconds=time_limit, metadata=_metadata(meta),
            idempotency_key=idempotency_key,
        )  # fmt: skip
        if not follow:
            if json_out:
                view.write_json_line(sys.stdout, task.model_dump_json())
            else:
                print(task.task_id, flush=True)
                err.print(
                    f"{task.state} on {task.queue} (priority {task.priority}, "
                    f"~{task.estimated_seconds:g}s {task.estimate_source})",
                    style="dim", highlight=False,
                )  # fmt: skip
            return
        if not json_out:
            err.print(f"task {task.task_id} on {task.queue}", style="dim", highlight=False)
        code = _follow(oc, task.task_id, 0, timeout, json_out)
    raise typer.Exit(code)


@app.command("follow")
def follow_cmd(
    ctx: typer.Context,
    task_id: TaskId,
    after: Annotated[int, typer.Option("--after", help="Start after this seq.", min=0)] = 0,
    timeout: Timeout = None,
    json_out: Json = False,
) -> None:
    """Follow a task live until it ends; the exit code says how it ended."""
    with client(ctx, json_out) as oc:
        code = _follow(oc, task_id, after, timeout, json_out)
    raise typer.Exit(code)


@app.command()
def wait(
    ctx: typer.Context, task_id: TaskId, timeout: Timeout = None, json_out: Json = False
) -> None:
    """Wait until a task ends; prints its answer; the exit code says how it ended."""
    with client(ctx, json_out) as oc:
        task = oc.wait(task_id, timeout=timeout)
    if json_out:
        view.write_json_line(sys.stdout, task.model_dump_json())
    else:
        body = view.task_body(task)
        if body:
            print(body, flush=True)
        err.print(view.task_final_line(task))
    raise typer.Exit(view.exit_code(task.state))


@app.command()
def get(ctx: typer.Context, task_id: TaskId, json_out: Json = False) -> None:
    """Show a task: state, timings, attempts, and its answer (or partial output)."""
    with client(ctx, json_out) as oc:
        task = oc.get(task_id)
    if json_out:
        view.write_json_line(sys.stdout, task.model_dump_json())
        return
    out.print(view.task_table(task))
    body = view.task_body(task)
    if body:
        out.print()
        out.print(body, markup=False, highlight=False)


@app.command("list")
def list_cmd(
    ctx: typer.Context,
    session: Annotated[str | None, typer.Option("--session", "-s")] = None,
    state: Annotated[str | None, typer.Option("--state", help="queued, running, ...")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Most tasks shown.")] = 20,
    json_out: Json = False,
) -> None:
    """List tasks, newest first (pages are fetched as needed up to --limit)."""
    with client(ctx, json_out) as oc:
        tasks = oc.iter_tasks(session_id=session, state=state, page_size=min(limit, 200))
        shown = list(islice(tasks, limit))
    if json_out:
        for task in shown:
            view.write_json_line(sys.stdout, task.model_dump_json())
    else:
        out.print(view.tasks_table(shown))


def _control(ctx: typer.Context, task_id: str, action: str, json_out: bool) -> None:
    with client(ctx, json_out) as oc:
        task = oc.control(task_id, action)
    if json_out:
        view.write_json_line(sys.stdout, task.model_dump_json())
    elif action == "cancel" and not task.terminal:
        err.print(f"cancel requested: {task.task_id} is {task.state}; its partial output is kept")
    else:
        err.print(f"{task.task_id}: {task.state}", highlight=False)


@app.command()
def cancel(ctx: typer.Context, task_id: TaskId, json_out: Json = False) -> None:
    """Cancel a task (a running one stops within about a second, keeping its partial)."""
    _control(ctx, task_id, "cancel", json_out)


@app.command()
def retry(ctx: typer.Context, task_id: TaskId, json_out: Json = False) -> None:
    """Start a new attempt of a failed, cancelled or timed-out task."""
    _control(ctx, task_id, "retry", json_out)


@app.command()
def pause(ctx: typer.Context, task_id: TaskId, json_out: Json = False) -> None:
    """Hold a queued task until it is resumed."""
    _control(ctx, task_id, "pause", json_out)


@app.command()
def resume(ctx: typer.Context, task_id: TaskId, json_out: Json = False) -> None:
    """Let a paused task run again."""
    _control(ctx, task_id, "resume", json_out)


def main() -> None:
    app()
