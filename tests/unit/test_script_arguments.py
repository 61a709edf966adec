"""Each Lua script gets exactly the arguments its body reads, in one calling convention."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from taskrecord import live_scripts
from taskrecord.live import CreateResult, LiveCalls, ScriptCall, TenantQuota, create_result
from taskrecord.settings import get_settings

CALLS = LiveCalls(get_settings(v1_url="http://v1"))
# script -> a call built by LiveCalls, with distinct values so order mistakes show.
BUILT: dict[str, Callable[[], ScriptCall]] = {
    "claim": lambda: CALLS.claim("t1", "w", 15.0, "tok", "2"),
    "progress": lambda: CALLS.progress("t1", "tok", "delta"),
    "finalize": lambda: CALLS.finalize("t1", "failed", token="tok", error={"type": "x"}),
    "requeue": lambda: CALLS.requeue("t1", "tok", 1.5, {"type": "x"}, "short"),
    "cancel": lambda: CALLS.cancel("t1", "why"),
    "recover": lambda: CALLS.recover("t1", "fence"),
    "pause": lambda: CALLS.pause("t1"),
    "resume": lambda: CALLS.resume("t1"),
    "retry": lambda: CALLS.retry("t1", 1000.0, "manual"),
    "take_due": lambda: CALLS.take_due("t1"),
    "restore_orphan": lambda: CALLS.restore_orphan("t1", "tag", "2", "short", "{}"),
}


def highest_argv(name: str) -> int:
    """The highest ARGV index the script's own code reads (comments and prelude aside)."""
    body = live_scripts.load(name).split("-- " + name.upper(), 1)[1]
    code = "\n".join(line for line in body.splitlines() if not line.lstrip().startswith("--"))
    return max((int(i) for i in re.findall(r"ARGV\[(\d+)\]", code)), default=4)


@pytest.mark.parametrize("name", sorted(BUILT))
def test_call_passes_exactly_the_arguments_the_script_reads(name: str) -> None:
    call = BUILT[name]()
    assert call.source == live_scripts.load(name)
    assert list(call.keys) == ["v2:task:t1"]
    assert call.args[0] == "t1"  # ARGV[1]: the task id, as the prelude expects
    assert len(call.args) == max(highest_argv(name), 4)


def test_argument_order_of_finalize() -> None:
    args = CALLS.finalize("t1", "failed", token="tok", error={"type": "x"}, reason="r").args
    # ARGV[5..]: token, state, result_json, error_json, reason, result_ttl, only_from
    assert list(args[4:9]) == ["tok", "failed", "{}", '{"type":"x"}', "r"]


def test_create_takes_tenant_limits_then_field_pairs() -> None:
    quota = TenantQuota("acme", max_queued=7, rate_per_second=2.5, burst=9)
    call = CALLS.create("t1", {"a": "1", "b": 2}, {"queue": "short"}, 5.0, "short", 10, "{}",
                        quota)  # fmt: skip
    # ARGV[11..14]: tenant, tenant_max_queued, rate_per_second, burst; ARGV[15..16]:
    # if_busy, due_at (defaults: enqueue, now); fields from ARGV[17].
    assert list(call.args[10:14]) == ["acme", 7, 2.5, 9]
    assert list(call.args[14:16]) == ["", "0.000000"]
    assert list(call.args[16:]) == ["a", "1", "b", 2]
    assert highest_argv("create") == 16
    assert "local FIELDS = 17" in live_scripts.load("create")


def test_create_passes_the_busy_policy_and_the_due_time_before_the_fields() -> None:
    call = CALLS.create("t1", {"a": "1"}, {}, 5.0, "short", 10, "{}", if_busy="interrupt",
                        due_at=1700000000.25)  # fmt: skip
    assert list(call.args[14:]) == ["interrupt", "1700000000.250000", "a", "1"]


def test_create_result_reads_a_plain_answer_and_the_tasks_to_cancel() -> None:
    assert create_result(1) == CreateResult("1", [])
    assert create_result(b"busy:t9") == CreateResult("busy:t9", [])
    assert create_result([1, b"t2", b"t3"]) == CreateResult("1", ["t2", "t3"])


def test_every_script_file_has_a_header_and_is_loaded_once() -> None:
    for name in [*BUILT, "create"]:
        source = live_scripts.load(name)
        assert source is live_scripts.load(name)
        body = source.split("-- " + name.upper(), 1)
        assert len(body) == 2, f"{name}.lua must start with its header comment"


def test_renew_many_passes_one_key_and_one_token_per_task_after_the_lease() -> None:
    call = CALLS.renew_many([("t1", "tok1"), ("t2", "tok2")], 15.0)
    assert call.source == live_scripts.load("renew_many")
    assert list(call.keys) == ["v2:task:t1", "v2:task:t2"]
    # ARGV[1..4]: the prelude's (task id a placeholder); ARGV[5] the lease; ARGV[5 + i] the
    # token of KEYS[i].
    assert list(call.args[4:]) == [15.0, "tok1", "tok2"]
    assert "ARGV[5 + i]" in live_scripts.load("renew_many")
