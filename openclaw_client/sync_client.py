"""`OpenClaw`: the synchronous client (httpx). `AsyncOpenClaw` mirrors it call for call."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from openclaw_client._follow import FollowState
from openclaw_client._requests import (
    Messages,
    check_action,
    list_params,
    parse,
    submit_request,
    task_path,
)
from openclaw_client.config import ClientConfig, FollowPolicy
from openclaw_client.errors import APIError, WaitTimeout, error_from_response, unreachable
from openclaw_client.models import Event, Task, TaskPage


class OpenClaw:
    """A client of one gateway. Configuration from the arguments, else `OPENCLAW_URL` and
    `OPENCLAW_API_KEY`. Use it as a context manager (or call `close`)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        follow_policy: FollowPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = ClientConfig.resolve(base_url, api_key, timeout=timeout, follow=follow_policy)
        self._http = httpx.Client(
            base_url=self.config.base_url,
            headers=self.config.headers(),
            timeout=self.config.http_timeout(),
            transport=transport,
        )

    def __enter__(self) -> OpenClaw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise unreachable(exc) from exc

    def submit(
        self,
        message: str | None = None,
        *,
        messages: Messages | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        priority: int | None = None,
        estimated_seconds: float | None = None,
        timeout_seconds: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Task:
        """Queue a task (`message` text, or a whole chat as `messages`); returns at once."""
        body, headers = submit_request(
            message, messages, agent_id=agent_id, session_id=session_id, priority=priority,
            estimated_seconds=estimated_seconds, timeout_seconds=timeout_seconds,
            metadata=metadata, idempotency_key=idempotency_key,
        )  # fmt: skip
        return parse(self._call("POST", "/v1/tasks", json=body, headers=headers), Task)

    def get(self, task_id: str) -> Task:
        return parse(self._call("GET", task_path(task_id)), Task)

    def list(
        self,
        *,
        session_id: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> TaskPage:
        """One page, newest first; pass `next_cursor` back as `cursor` for the next."""
        params = list_params(session_id, state, limit, cursor)
        return parse(self._call("GET", "/v1/tasks", params=params), TaskPage)

    def pages(
        self, *, session_id: str | None = None, state: str | None = None, limit: int | None = None
    ) -> Iterator[TaskPage]:
        """Every page in turn (`limit` tasks per page), fetched as you iterate."""
        cursor: str | None = None
        while True:
            page = self.list(session_id=session_id, state=state, limit=limit, cursor=cursor)
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def iter_tasks(
        self, *, session_id: str | None = None, state: str | None = None, page_size: int = 50
    ) -> Iterator[Task]:
        """Every task, newest first, across pages."""
        for page in self.pages(session_id=session_id, state=state, limit=page_size):
            yield from page.tasks

    def control(self, task_id: str, action: str) -> Task:
        """`cancel`, `pause`, `resume` or `retry`; a state that refuses it: `ConflictError`."""
        check_action(action)
        return parse(self._call("POST", task_path(task_id, f"/{action}")), Task)

    def cancel(self, task_id: str) -> Task:
        return self.control(task_id, "cancel")

    def pause(self, task_id: str) -> Task:
        return self.control(task_id, "pause")

    def resume(self, task_id: str) -> Task:
        return self.control(task_id, "resume")

    def retry(self, task_id: str) -> Task:
        return self.control(task_id, "retry")

    def follow(
        self, task_id: str, after_seq: int = 0, *, timeout: float | None = None
    ) -> Iterator[Event]:
        """The task's events after `after_seq`, live, each once and in order, ending with the
        terminal event. Dropped connections and gateway restarts are ridden out by resuming
        from the last seq (see `FollowPolicy`); `timeout` bounds the whole follow.
        A retried task's log also holds the earlier attempt's end, and the stream ends at
        the first terminal event after `after_seq`: `wait` looks past it."""
        state = FollowState(self.config, task_id, after_seq, timeout)
        path = task_path(task_id, "/events")
        while True:
            state.check_deadline()
            cause: BaseException | None = None
            try:
                timeout_ = self.config.stream_timeout(state.remaining())
                with self._http.stream("GET", path, headers=state.headers(), timeout=timeout_) as r:
                    if r.status_code != 200:
                        r.read()
                        cause = state.refused(error_from_response(r))
                    else:
                        state.connected()
                        for sse in EventSource(r).iter_sse():
                            event = state.admit(sse)
                            if event is not None:
                                yield event
                                if event.terminal:
                                    return
            except httpx.TransportError as exc:
                cause = exc
            except SSEError as exc:
                raise APIError(f"not an event stream: {exc}", type="bad_stream") from exc
            time.sleep(state.dropped(cause))

    def wait(self, task_id: str, timeout: float | None = None) -> Task:
        """The task once it has ended (any terminal state), following its events rather
        than polling. `WaitTimeout` if it has not ended within `timeout` seconds."""
        deadline = time.monotonic() + timeout if timeout is not None else None
        task = self.get(task_id)
        after = 0
        while not task.terminal:
            remaining = None if deadline is None else deadline - time.monotonic()
            try:
                for event in self.follow(task_id, after, timeout=remaining):
                    after = event.seq
            except WaitTimeout:
                raise WaitTimeout(f"task {task_id} did not end within {timeout:g} s") from None
            # The log may hold an earlier attempt's end (a retried task): look again.
            task = self.get(task_id)
        return task
