"""`taskrecord.script_batch`: script calls made in the same event-loop turn share one round
trip, each caller gets its own answer or error, an unknown script is loaded, a failed
connection fails every call in it, and a caller gone meanwhile disturbs no one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from deploy.embedded_valkey import EmbeddedValkey, free_port
from taskrecord.script_batch import ScriptBatcher

ECHO = "if ARGV[1] == 'bad' then return redis.error_reply('bad argument') end " \
       "redis.call('INCR', KEYS[1]) return ARGV[1]"  # fmt: skip


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmbeddedValkey]:
    # Its own server: SCRIPT FLUSH below would unload every other test's scripts.
    with EmbeddedValkey(tmp_path, appendonly=False) as valkey:
        yield valkey


def test_calls_of_one_turn_share_a_round_trip(server: EmbeddedValkey) -> None:
    async def scenario() -> tuple[list[object], ScriptBatcher]:
        client = aioredis.Redis.from_url(server.url)
        batcher = ScriptBatcher(client)
        try:
            answers = await asyncio.gather(
                *(batcher.run(ECHO, ["n"], [f"v{i}"]) for i in range(20)),
                batcher.run(ECHO, ["n"], ["bad"]),
                return_exceptions=True,
            )
            return answers, batcher
        finally:
            await client.aclose()

    answers, batcher = asyncio.run(scenario())
    assert answers[:20] == [f"v{i}".encode() for i in range(20)]
    assert isinstance(answers[20], redis.ResponseError) and "bad argument" in str(answers[20])
    assert (batcher.calls, batcher.round_trips) == (21, 1)
    assert redis.Redis.from_url(server.url).get("n") == b"20"  # each ran once


def test_an_unknown_script_is_loaded_and_a_lone_call_goes_alone(server: EmbeddedValkey) -> None:
    async def scenario() -> tuple[list[object], object, ScriptBatcher]:
        client = aioredis.Redis.from_url(server.url)
        batcher = ScriptBatcher(client)
        try:
            first = await asyncio.gather(*(batcher.run(ECHO, ["n"], [str(i)]) for i in range(2)))
            await client.script_flush()  # as after a server restart
            again = await asyncio.gather(*(batcher.run(ECHO, ["n"], [str(i)]) for i in range(3)))
            lone = await batcher.run(ECHO, ["n"], ["lone"])
            return [*first, *again], lone, batcher
        finally:
            await client.aclose()

    answers, lone, batcher = asyncio.run(scenario())
    assert answers == [b"0", b"1", b"0", b"1", b"2"] and lone == b"lone"
    assert (batcher.calls, batcher.round_trips) == (6, 3)


def test_a_failed_connection_fails_every_call_in_it() -> None:
    async def scenario() -> list[object]:
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nothing there
        batcher = ScriptBatcher(client)
        try:
            calls = (batcher.run(ECHO, ["n"], [str(i)]) for i in range(3))
            answers: list[object] = await asyncio.gather(*calls, return_exceptions=True)
            return answers
        finally:
            await client.aclose()

    answers = asyncio.run(scenario())
    assert len(answers) == 3
    assert all(isinstance(a, redis.ConnectionError) for a in answers), answers


def test_a_caller_gone_before_its_turn_ends_disturbs_no_one(server: EmbeddedValkey) -> None:
    async def scenario() -> tuple[list[object], ScriptBatcher]:
        client = aioredis.Redis.from_url(server.url)
        batcher = ScriptBatcher(client)
        try:
            calls = [asyncio.ensure_future(batcher.run(ECHO, ["n"], [str(i)])) for i in range(3)]
            await asyncio.sleep(0)  # all three wait for the flush
            calls[1].cancel()
            answers = await asyncio.gather(*calls, return_exceptions=True)
            return answers, batcher
        finally:
            await client.aclose()

    answers, batcher = asyncio.run(scenario())
    assert answers[0] == b"0" and answers[2] == b"2"
    assert isinstance(answers[1], asyncio.CancelledError)
    assert (batcher.calls, batcher.round_trips) == (2, 1)  # the gone caller's was not sent


def test_a_batch_cut_short_leaves_no_caller_waiting(server: EmbeddedValkey) -> None:
    async def scenario() -> list[object]:
        client = aioredis.Redis.from_url(server.url)
        batcher = ScriptBatcher(client)
        try:
            # Busy for a while (TIME stands still inside a script: count instead).
            slow = "redis.call('INCR', KEYS[1]) for i = 1, 20000000 do end return 1"
            calls = [asyncio.ensure_future(batcher.run(slow, ["n"], [])) for _ in range(2)]
            await asyncio.sleep(0.05)  # sent, Valkey busy with them
            for task in asyncio.all_tasks():  # what a loop's shutdown does: the batch's
                if task is not asyncio.current_task() and task not in calls:  # sender
                    task.cancel()
            return await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
        finally:
            await client.aclose()

    answers = asyncio.run(scenario())
    assert all(isinstance(a, asyncio.CancelledError) for a in answers), answers
