"""The V1 client reads a stream to its end after [DONE], so httpx keeps the connection for
the next call (a half-read response closes it), and that read is bounded and harmless."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2 as httpx

from tasks.v1_client import DRAIN_LINES, V1Client

DONE_STREAM = [
    b'data: {"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n',
    b"data: [DONE]\n\n",
]


class Body(httpx.SyncByteStream):
    """A response body that records how far it was read."""

    def __init__(self, chunks: list[bytes], then: Exception | None = None) -> None:
        self.chunks = chunks
        self.then = then
        self.sent = 0
        self.ended = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.sent += 1
            yield chunk
        if self.then is not None:
            raise self.then
        self.ended = True


def chat_with(body: Body) -> str:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, stream=body)

    client = V1Client("http://v1.test", "tok", transport=httpx.MockTransport(handler))
    try:
        messages = [{"role": "user", "content": "x"}]
        return client.chat(agent_id="main", messages=messages).content
    finally:
        client.close()


def test_the_body_is_read_to_its_end_after_done() -> None:
    # The body's end arrives as its own read after [DONE] (a chunked stream's last chunk).
    body = Body([*DONE_STREAM, b""])
    assert chat_with(body) == "hi"
    assert body.ended


def test_a_stream_that_goes_on_after_done_is_read_only_so_far() -> None:
    extra = [f": keep-alive {i}\n".encode() for i in range(10 * DRAIN_LINES)]
    body = Body([*DONE_STREAM, *extra])
    assert chat_with(body) == "hi"
    assert not body.ended and body.sent <= len(DONE_STREAM) + DRAIN_LINES + 1


def test_an_error_after_done_does_not_fail_the_complete_answer() -> None:
    body = Body(DONE_STREAM, then=httpx.ReadError("connection reset after [DONE]"))
    assert chat_with(body) == "hi"
