"""The worker autoscaler's decision (deploy/autoscale_policy.py) and the supervisord layout
`make run` gives it (deploy/programs.py). The autoscaler at work: tests/test_autoscaler.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from deploy.autoscale_policy import PoolConfig, PoolState, decide, desired_size
from deploy.autoscaler import node_prefixes, pool_configs
from deploy.endpoints import resolve_endpoints
from deploy.errors import LaunchError
from deploy.layout import Layout
from deploy.programs import AUTOSCALER, autoscaled_pools, plan_programs
from deploy.supervisor_conf import render_supervisord_conf
from taskrecord.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]
SLOTS = ("w", "w-2", "w-3", "w-4")
CONFIG = PoolConfig(queue="short", minimum=1, maximum=4, slots=SLOTS, per_process=10)
COOLDOWN = 10.0


def _settings(**values: object) -> Settings:
    explicit: dict[str, object] = {
        "redis_url": "redis://127.0.0.1:1/0",
        "v1_url": "http://127.0.0.1:2",
        "autoscale": True,
        "autoscale_short_min": 5,
        "autoscale_short_max": 20,
        "autoscale_long_min": 2,
        "autoscale_long_max": 10,
        "worker_concurrency": 50,
    }
    return get_settings(**{**explicit, **values})


def _running(*slots: str) -> dict[str, str]:
    return {slot: "RUNNING" if slot in slots else "EXITED" for slot in SLOTS}


def test_desired_size_is_the_load_over_tasks_per_process_within_min_and_max() -> None:
    assert [desired_size(CONFIG, load) for load in (0, 1, 10, 11, 35, 1000)] == [1, 1, 1, 2, 4, 4]


def test_a_burst_grows_the_pool_at_once_up_to_its_maximum() -> None:
    state = PoolState()
    decision = decide(CONFIG, state, 0.0, COOLDOWN, _running("w"), depth=95, held={"w": 10})
    assert decision.start == ("w-2", "w-3", "w-4")
    assert decision.drain == ()


def test_the_pool_shrinks_only_after_a_whole_cooldown_of_lower_load() -> None:
    state = PoolState(last_change=0.0)
    states = _running(*SLOTS)
    busy = {slot: 1 for slot in SLOTS}
    for now in (1.0, 5.0, 9.0):  # a dip inside the cooldown drains nothing
        assert decide(CONFIG, state, now, COOLDOWN, states, 0, busy).drain == ()
    decision = decide(CONFIG, state, 10.5, COOLDOWN, states, 0, busy)
    # Down to the most the window asked for (4 tasks: one process), the newest first.
    assert decision.drain == ("w-4", "w-3", "w-2")
    # Draining processes are no longer counted, nor drained twice, nor their tasks load.
    again = decide(CONFIG, state, 11.0, COOLDOWN, states, 0, busy)
    assert again.serving == 1 and again.drain == () and again.start == ()


def test_a_peak_inside_the_window_holds_the_pool_up() -> None:
    state = PoolState(last_change=-100.0)
    states = _running(*SLOTS)
    first = decide(CONFIG, state, 0.0, COOLDOWN, states, depth=25, held={})  # asks for 3
    assert first.drain == ("w-4",)
    assert decide(CONFIG, state, 5.0, COOLDOWN, states, depth=0, held={}).drain == ()
    # The peak has left the window: down to the minimum.
    assert decide(CONFIG, state, 10.5, COOLDOWN, states, depth=0, held={}).drain == ("w-3", "w-2")


def test_the_least_busy_processes_are_drained_first() -> None:
    state = PoolState(last_change=-100.0)
    held = {"w": 3, "w-2": 0, "w-3": 5}
    decision = decide(CONFIG, state, 0.0, COOLDOWN, _running("w", "w-2", "w-3"), 0, held)
    assert decision.drain == ("w-2", "w")


def test_a_process_still_starting_is_drained_only_once_its_worker_is_ready() -> None:
    # Celery takes SIGTERM as a warm shutdown only once started; before, the signal kills
    # it and supervisord restarts it (seen on a loaded machine: the pool never shrank).
    state = PoolState(last_change=-100.0)
    running = _running("w", "w-2", "w-3")
    first = decide(CONFIG, state, 0.0, COOLDOWN, running, 0, {"w": 1}, ready={"w"})
    assert first.drain == ()  # the two idle ones are still starting; w (busy) stays
    assert state.draining == set()
    later = decide(CONFIG, state, 1.0, COOLDOWN, running, 0, {"w": 1}, ready={"w", "w-3"})
    assert later.drain == ("w-3",)
    last = decide(CONFIG, state, 2.0, COOLDOWN, running, 0, {"w": 1}, ready={"w", "w-2", "w-3"})
    assert last.drain == ("w-2",) and state.draining == {"w-2", "w-3"}


def test_a_drained_process_that_exited_frees_its_slot_and_min_is_kept() -> None:
    state = PoolState(draining={"w-2"}, last_change=-100.0)
    # w-2 finished draining and exited; w exited too (recycled): below the minimum.
    decision = decide(CONFIG, state, 0.0, COOLDOWN, _running(), 0, {})
    assert state.draining == set()
    assert decision.start == ("w",)


def test_make_run_plans_one_program_per_possible_process_and_the_autoscaler() -> None:
    settings = _settings()
    layout = Layout.create(ROOT, "/tmp/openclaw-unit-var")
    programs = plan_programs(settings, resolve_endpoints(settings, layout), layout, sys.executable)
    by_name = {p.name: p for p in programs}
    short = [p for p in programs if p.name.startswith("worker-short")]
    assert [p.name for p in short][:3] == ["worker-short", "worker-short-2", "worker-short-3"]
    assert len(short) == 20 and sum(p.autostart for p in short) == 5
    assert {p.autorestart for p in short} == {"unexpected"}  # a crash still restarts
    assert len([p for p in programs if p.name.startswith("worker-long")]) == 10
    priority = [p for p in programs if p.name.startswith("worker-priority")]
    assert [(p.autostart, p.autorestart) for p in priority] == [(True, "true")] * 2
    # Stopped before the workers (it must start none during a shutdown), after them at start.
    assert by_name["worker-short"].priority < by_name[AUTOSCALER].priority
    assert by_name[AUTOSCALER].priority < by_name["maintenance"].priority
    text = render_supervisord_conf(programs, {}, layout)
    assert "[program:worker-short-20]" in text and "autorestart=unexpected" in text


def test_autoscale_off_keeps_two_fixed_workers_per_queue_and_no_autoscaler() -> None:
    settings = _settings(autoscale=False)
    layout = Layout.create(ROOT, "/tmp/openclaw-unit-var")
    programs = plan_programs(settings, resolve_endpoints(settings, layout), layout, sys.executable)
    names = [p.name for p in programs]
    assert AUTOSCALER not in names
    assert [n for n in names if n.startswith("worker-short")] == ["worker-short", "worker-short-2"]
    assert pool_configs(settings) == []


def test_a_minimum_above_the_maximum_is_refused() -> None:
    with pytest.raises(LaunchError, match="AUTOSCALE_SHORT_MIN"):
        autoscaled_pools(_settings(autoscale_short_min=5, autoscale_short_max=3))


def test_tasks_are_counted_for_the_slot_whose_celery_node_ran_them() -> None:
    [short, _] = pool_configs(_settings())
    prefixes = node_prefixes(short)
    assert prefixes["short@"] == "worker-short"
    assert prefixes["short-12@"] == "worker-short-12"
    assert short.per_process == 50 and short.slots[-1] == "worker-short-20"


def test_the_k8s_scaled_objects_use_the_same_process_ranges() -> None:
    documents = yaml.safe_load_all((ROOT / "deploy" / "k8s" / "workers.yaml").read_text())
    scaled = {
        doc["spec"]["scaleTargetRef"]["name"]: doc["spec"]
        for doc in documents
        if doc and doc["kind"] == "ScaledObject"
    }
    fields = Settings.model_fields
    for queue in ("short", "long"):
        spec = scaled[f"worker-{queue}"]
        assert spec["minReplicaCount"] == fields[f"autoscale_{queue}_min"].default
        assert spec["maxReplicaCount"] == fields[f"autoscale_{queue}_max"].default
