"""`AsyncOpenClaw`: the asyncio/anyio client, call for call the same as `OpenClaw`."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Mapping
from contextlib import aclosing
from typing import Any

import anyio
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


class AsyncOpenClaw:
    """A client of one gateway. Configuration from the arguments, else `OPENCLAW_URL` and
    `OPENCLAW_API_KEY`. Use it as an async context manager (or await `close`)."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        follow_policy: FollowPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = ClientConfig.resolve(base_url, api_key, timeout=timeout, follow=follow_policy)
        self._http = httpx.AsyncClient(
            base_url=self.config.base_url,
            headers=self.config.headers(),
            timeout=self.config.http_timeout(),
            transport=transport,
        )

    async def __aenter__(self) -> AsyncOpenClaw:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise unreachable(exc) from exc

    async def submit(
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
        return parse(await self._call("POST", "/v1/tasks", json=body, headers=headers), Task)

    async def get(self, task_id: str) -> Task:
        return parse(await self._call("GET", task_path(task_id)), Task)

    async def list(
        self,
        *,
        session_id: str | None = None,
        state: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> TaskPage:
        """One page, newest first; pass `next_cursor` back as `cursor` for the next."""
        params = list_params(session_id, state, limit, cursor)
        return parse(await self._call("GET", "/v1/tasks", params=params), TaskPage)

    async def pages(
        self, *, session_id: str | None = None, state: str | None = None, limit: int | None = None
    ) -> AsyncGenerator[TaskPage, None]:
        """Every page in turn (`limit` tasks per page), fetched as you iterate."""
        cursor: str | None = None
        while True:
            page = await self.list(session_id=session_id, state=state, limit=limit, cursor=cursor)
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def iter_tasks(
        self, *, session_id: str | None = None, state: str | None = None, page_size: int = 50
    ) -> AsyncGenerator[Task, None]:
        """Every task, newest first, across pages."""
        async for page in self.pages(session_id=session_id, state=state, limit=page_size):
            for task in page.tasks:
                yield task

    async def control(self, task_id: str, action: str) -> Task:
        """`cancel`, `pause`, `resume` or `retry`; a state that refuses it: `ConflictError`."""
        check_action(action)
        return parse(await self._call("POST", task_path(task_id, f"/{action}")), Task)

    async def cancel(self, task_id: str) -> Task:
        return await self.control(task_id, "cancel")

    async def pause(self, task_id: str) -> Task:
        return await self.control(task_id, "pause")

    async def resume(self, task_id: str) -> Task:
        return await self.control(task_id, "resume")

    async def retry(self, task_id: str) -> Task:
        return await self.control(task_id, "retry")

    async def follow(
        self,
        task_id: str,
        after_seq: int = 0,
        *,
        # Same signature as the sync client's; it also bounds each read, so not fail_after.
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> AsyncGenerator[Event, None]:
        """The task's events after `after_seq`, live, each once and in order, ending with the
        terminal event. Dropped connections and gateway restarts are ridden out by resuming
        from the last seq (see `FollowPolicy`); `timeout` bounds the whole follow.
        A retried task's log also holds the earlier attempt's end, and the stream ends at
        the first terminal event after `after_seq`: `wait` looks past it.
        Leaving the loop early: close the generator (`contextlib.aclosing`) to free the
        connection at once rather than when it is garbage-collected."""
        state = FollowState(self.config, task_id, after_seq, timeout)
        path = task_path(task_id, "/events")
        while True:
            state.check_deadline()
            cause: BaseException | None = None
            try:
                timeout_ = self.config.stream_timeout(state.remaining())
                stream = self._http.stream("GET", path, headers=state.headers(), timeout=timeout_)
                async with stream as r:
                    if r.status_code != 200:
                        await r.aread()
                        cause = state.refused(error_from_response(r))
                    else:
                        state.connected()
                        async for sse in EventSource(r).aiter_sse():
                            event = state.admit(sse)
                            if event is not None:
                                yield event
                                if event.terminal:
                                    return
            except httpx.TransportError as exc:
                cause = exc
            except SSEError as exc:
                raise APIError(f"not an event stream: {exc}", type="bad_stream") from exc
            await anyio.sleep(state.dropped(cause))

    async def wait(self, task_id: str, timeout: float | None = None) -> Task:  # noqa: ASYNC109
        """The task once it has ended (any terminal state), following its events rather
        than polling. `WaitTimeout` if it has not ended within `timeout` seconds."""
        deadline = time.monotonic() + timeout if timeout is not None else None
        task = await self.get(task_id)
        after = 0
        while not task.terminal:
            remaining = None if deadline is None else deadline - time.monotonic()
            try:
                async with aclosing(self.follow(task_id, after, timeout=remaining)) as events:
                    async for event in events:
                        after = event.seq
            except WaitTimeout:
                raise WaitTimeout(f"task {task_id} did not end within {timeout:g} s") from None
            # The log may hold an earlier attempt's end (a retried task): look again.
            task = await self.get(task_id)
        return task
