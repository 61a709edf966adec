"""Pieces of `bench.crash_recovery`: the V1 activity monitor, the worker killer, and what
Redis and the simulator say about the tasks afterwards."""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from typing import Any

import httpx
import redis

from bench.processes import STOPPING
from bench.report import log
from taskrecord import keys
from testbed import ManagedProcess, System

NAME = "crash_recovery"


def v1_active(sim_url: str) -> int | None:
    try:
        return int(httpx.get(f"{sim_url}/_sim/stats", timeout=5).json()["active"])
    except (httpx.HTTPError, ValueError, KeyError):
        return None


class Monitor(threading.Thread):
    """V1 runs active over time (simulator stats), every 0.5 s."""

    def __init__(self, sim_url: str) -> None:
        super().__init__(name="monitor", daemon=True)
        self.sim_url = sim_url
        self.stop = threading.Event()
        self.series: list[tuple[float, int | None]] = []

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.series.append((time.time(), v1_active(self.sim_url)))


class Killer(threading.Thread):
    """Every `every` s: SIGKILL a random live worker, then start a replacement."""

    def __init__(
        self, system: System, workers: list[ManagedProcess], args: argparse.Namespace
    ) -> None:
        super().__init__(name="killer", daemon=True)
        self.system = system
        self.workers = workers
        self.args = args
        self.rng = random.Random(args.seed)
        self.stop = threading.Event()
        self.kills: list[dict[str, Any]] = []
        self.error: str | None = None

    def run(self) -> None:
        try:
            # Jittered, so kills do not keep landing between two waves of equal-length tasks.
            while not self.stop.wait(self.args.kill_every * self.rng.uniform(0.6, 1.4)):
                if STOPPING.is_set():
                    break
                alive = [w for w in self.workers if w.alive()]
                if not alive:
                    continue
                victim = self.rng.choice(alive)
                # Equal-length tasks run in waves with short idle gaps between them; a kill
                # landing in a gap tests nothing, so wait (up to 3 s) for V1 calls in flight.
                waited_from = time.time()
                active = v1_active(self.system.v1_url)
                while not active and time.time() - waited_from < 3.0 and not self.stop.is_set():
                    time.sleep(0.2)
                    active = v1_active(self.system.v1_url)
                t_kill = time.time()
                victim.kill()
                kill = {
                    "worker": victim.name,
                    "pid": victim.pid,
                    "at": t_kill,
                    "v1_active_all_workers_before": active,
                    "deferred_s": round(t_kill - waited_from, 2),
                }
                self.workers.remove(victim)
                if self.stop.is_set():
                    self.kills.append(kill)
                    break
                replacement = self.system.start_worker(
                    "short", concurrency=self.args.worker_concurrency
                )
                self.workers.append(replacement)
                kill["replacement_ready_after_s"] = round(time.time() - t_kill, 2)
                self.kills.append(kill)
                log(
                    NAME,
                    f"killed {victim.name}; replacement ready in "
                    f"{kill['replacement_ready_after_s']}s",
                )
        except Exception as exc:  # reported in the results
            self.error = f"{type(exc).__name__}: {exc}"


def lost_diagnostics(redis_url: str, task_ids: list[str]) -> dict[str, Any]:
    """What Redis holds about tasks that never ended (live record without the request
    text, lease / dispatch-due scores, queue lengths), for the report."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        # kombu's Redis transport keeps delivered, unacknowledged messages in `unacked`
        # until they are acked or visibility_timeout passes.
        unacked = client.hgetall("unacked")
        out: dict[str, Any] = {
            "queue_lengths": {q: client.llen(q) for q in ("priority", "short", "long")},
            "kombu_unacked_messages": len(unacked),
        }
        for task_id in task_ids:
            record = client.hgetall(keys.task_key(task_id))
            record.pop("request", None)
            out[task_id] = {
                "record": record,
                "lease_score": client.zscore(keys.LEASES, task_id),
                "dispatch_due_score": client.zscore(keys.DISPATCH_DUE, task_id),
                "in_kombu_unacked": any(task_id in payload for payload in unacked.values()),
                "events": [
                    json.loads(fields["e"])["type"]
                    for _, fields in client.xrange(keys.events_key(task_id))
                ],
            }
        return out
    finally:
        client.close()


def overlaps(records: list[dict[str, Any]]) -> int:
    """Pairs of calls of one tag that were running at the same moment."""
    count = 0
    for i, a in enumerate(records):
        a_end = a.get("ended_at") or float("inf")
        for b in records[i + 1 :]:
            b_end = b.get("ended_at") or float("inf")
            if a["started_at"] < b_end and b["started_at"] < a_end:
                count += 1
    return count
