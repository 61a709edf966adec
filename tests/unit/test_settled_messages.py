"""`taskrecord.settled_messages`: a tag is marked only in the process whose transport acks
(a prefork child's mark would never be taken: its parent acks), and is taken once."""

from __future__ import annotations

import multiprocessing

import pytest

from taskrecord import settled_messages


@pytest.fixture(autouse=True)
def no_transport_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    # Module state is per process: an earlier test in this pytest process (xdist runs many)
    # may have started a worker transport here, which records this pid as the acking one.
    monkeypatch.setattr(settled_messages, "_acking_pid", 0)
    monkeypatch.setattr(settled_messages, "_settled", set())


def _mark_in_child(tag: str) -> None:
    settled_messages.mark(tag)  # the parent's pid is recorded, not this one's
    assert settled_messages.pending() == 0


def test_a_tag_is_marked_where_the_transport_acks_and_taken_once() -> None:
    settled_messages.mark("before-any-transport")
    assert not settled_messages.take("before-any-transport")
    settled_messages.acks_here()
    settled_messages.mark("tag-1")
    settled_messages.mark("")  # a call without a worker's message: nothing to mark
    assert settled_messages.pending() == 1
    assert settled_messages.take("tag-1")
    assert not settled_messages.take("tag-1")
    assert settled_messages.pending() == 0


def test_a_child_process_marks_nothing() -> None:
    settled_messages.acks_here()
    child = multiprocessing.get_context("fork").Process(target=_mark_in_child, args=("tag-2",))
    child.start()
    child.join(10)
    assert child.exitcode == 0
