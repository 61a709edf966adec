"""Worker recycling by lifetime never leaves a queue without a consumer.

Real `celery worker -P gevent` processes (tests/harness.py) with a lifetime of a few
seconds; a restarter thread plays supervisord's part (start a fresh worker when one exits).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import redis

from deploy.embedded_valkey import EmbeddedValkey
from taskrecord.advertised import live_consumers
from tests.harness import ManagedProcess, System, new_system, submit, wait_terminal, wait_until
from v1sim.process import SimulatorProcess

QUEUE = "short"
LIFETIME = "3"
# Each task streams for about a second, so a draining worker really has work to finish.
TASK = "trickle {i} [sim:chunks=5] [sim:chunk_delay=0.2]"
ANSWER = "tok0 tok1 tok2 tok3 tok4 "
SHUTDOWN_NOISE = ("Traceback", "ValueError", "I/O operation on closed file")


class Restarter:
    """supervisord's part: whenever a worker exits, start a fresh one in its place."""

    def __init__(self, system: System, workers: list[ManagedProcess]) -> None:
        self.system = system
        self.workers = list(workers)
        self.exited: list[ManagedProcess] = []
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            while not self._stop.wait(0.05):
                for worker in [w for w in self.workers if not w.alive()]:
                    self.workers.remove(worker)
                    self.exited.append(worker)
                    self.workers.append(self.system.start_worker(queues=QUEUE))
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.failure = exc

    @contextmanager
    def running(self) -> Iterator[Restarter]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(90)
        assert self.failure is None, self.failure


class ConsumerSampler:
    """Samples the advertised consumers of a queue every 50 ms (in a thread)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.samples: list[tuple[float, list[str]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.samples.append((time.monotonic(), live_consumers(self.client, QUEUE)))

    @contextmanager
    def running(self) -> Iterator[ConsumerSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(10)

    def empty(self) -> list[float]:
        return [at for at, names in self.samples if not names]


def _seconds_waiting(task: dict[str, str]) -> float:
    started = datetime.fromisoformat(task["started_at"])
    return (started - datetime.fromisoformat(task["created_at"])).total_seconds()


def _shutdown_noise(worker: ManagedProcess) -> list[str]:
    return [line for line in worker.log().splitlines() if any(n in line for n in SHUTDOWN_NOISE)]


def test_recycling_workers_keep_their_queue_consumed(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    with new_system(valkey, simulator.url, tmp_path, WORKER_MAX_LIFETIME=LIFETIME) as system:
        system.start_gateway()
        client = redis.Redis.from_url(system.redis_url)
        first = [system.start_worker(queues=QUEUE), system.start_worker(queues=QUEUE)]
        # Includes two worker start-ups: over 10 s once on a busy 2-core box.
        wait_until(lambda: len(live_consumers(client, QUEUE)) == 2, 30, what="two adverts")
        restarter = Restarter(system, first)
        ids: list[str] = []
        with (
            system.client() as api,
            ConsumerSampler(client).running() as sampler,
            restarter.running(),
        ):
            # A steady trickle until both first workers and one replacement have recycled.
            deadline = time.monotonic() + 90
            i = 0
            while len(restarter.exited) < 3 and time.monotonic() < deadline:
                ids.append(submit(api, TASK.format(i=i))["task_id"])
                i += 1
                time.sleep(0.25)  # the trickle's pace, not a wait for a condition
            done = [wait_terminal(api, task_id, timeout=60) for task_id in ids]
        client.close()
        workers = restarter.exited + restarter.workers
    assert len(restarter.exited) >= 3, "the workers did not recycle"
    assert sampler.samples and sampler.empty() == [], "the queue had no consumer"
    assert [t["state"] for t in done] == ["succeeded"] * len(ids)
    assert all(t["attempts"] == 1 and t["result"]["content"] == ANSWER for t in done)
    waits = sorted(_seconds_waiting(t) for t in done)
    assert waits[-1] < 2, f"a task waited {waits[-1]:.1f}s for a consumer"
    for worker in restarter.exited:
        assert worker.proc is not None and worker.proc.returncode == 0, worker.log()[-2000:]
        assert "worker drained: exiting to be replaced" in worker.log()
    for worker in workers:
        assert _shutdown_noise(worker) == [], worker.name


def test_lone_worker_past_its_lifetime_waits_for_a_peer(
    valkey: EmbeddedValkey, simulator: SimulatorProcess, tmp_path: Path
) -> None:
    with new_system(valkey, simulator.url, tmp_path, WORKER_MAX_LIFETIME="1") as system:
        system.start_gateway()
        client = redis.Redis.from_url(system.redis_url)
        lone = system.start_worker(queues=QUEUE)
        lone.wait_for_log(f"no other worker consumes {QUEUE}", 30)  # its start-up included
        with system.client() as api:
            # Still consuming for a few more checks: sampled, bounded, never draining.
            until = time.monotonic() + 5
            while time.monotonic() < until:
                assert lone.alive() and "no longer taking tasks" not in lone.log()
                assert live_consumers(client, QUEUE), "the lone worker withdrew its advert"
                time.sleep(0.2)
            served = wait_terminal(api, submit(api, TASK.format(i="lone"))["task_id"])
            with ConsumerSampler(client).running() as sampler:
                peer = system.start_worker(queues=QUEUE)
                wait_until(lambda: not lone.alive(), 30, what="the lone worker to recycle")
            # The peer has served for a while: now it waits, alone, in its turn.
            peer.wait_for_log(f"no other worker consumes {QUEUE}", 15)
            after = wait_terminal(api, submit(api, TASK.format(i="peer"))["task_id"])
        client.close()
    assert served["state"] == "succeeded" and after["state"] == "succeeded"
    assert sampler.empty() == []
    assert lone.proc is not None and lone.proc.returncode == 0
    assert "worker drained: exiting to be replaced" in lone.log()
    assert _shutdown_noise(lone) == [] and _shutdown_noise(peer) == []
