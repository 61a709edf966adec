"""The worker autoscaler of `make run`: adds and removes worker PROCESSES per queue.

    python -m deploy.autoscaler [--queues short,long]

Runs as a supervisord program beside the workers it scales (AUTOSCALE=false leaves it out).
Every queue it scales has one supervisord program per possible process (`worker-short`,
`worker-short-2`, ... up to AUTOSCALE_SHORT_MAX, see deploy/programs.py); it starts and
stops them through supervisord's XML-RPC interface, on the unix socket supervisord names
in SUPERVISOR_SERVER_URL. The queue itself stays Celery's Redis list.

Why processes and not Celery's own `--autoscale` (which the workers also use, to size the
gevent pool inside one process): the greenlets of one gevent process share one core, and
Celery spends 12-18 ms of CPU per task, so one process tops out near 60-80 task starts per
second however large its pool; only more processes use more cores. A process also fails
alone: a crash or the memory guard takes only its own tasks.

Load per queue: its depth (LLEN of Celery's list, as app/overview.py reads it; no priority
steps are configured, so one list per queue) plus the tasks its processes run, from the
live store's leases (`v2:leases`, each task's `worker` field). Tasks waiting for a V1 slot,
a paused queue's backlog and any backlog while V1's breaker is open count for nothing:
more processes would not run them sooner.

Scaling down DRAINS a process: SIGTERM is Celery's warm shutdown: the worker stops
consuming, finishes every task it holds, and exits 0, which supervisord (autorestart=
unexpected) leaves stopped. Nothing is killed: no stop timeout applies to a drain. The
decision itself (grow at once, shrink after a cooldown window) is deploy/autoscale_policy.py.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
import xmlrpc.client
from collections.abc import Sequence
from types import FrameType
from typing import Any

import redis
from supervisor.xmlrpc import Faults, SupervisorTransport

from deploy.autoscale_policy import Decision, PoolConfig, PoolState, decide
from deploy.programs import autoscaled_pools, worker_node_name, worker_program_name
from taskrecord import keys
from taskrecord.advertised import live_consumers
from taskrecord.live import text
from taskrecord.redis_client import redis_client
from taskrecord.settings import Settings, get_settings

log = logging.getLogger("deploy.autoscaler")


def pool_configs(settings: Settings, queues: Sequence[str] | None = None) -> list[PoolConfig]:
    pools = autoscaled_pools(settings)
    chosen = list(pools) if queues is None else [q for q in queues if q in pools]
    return [
        PoolConfig(
            queue=queue,
            minimum=pools[queue][0],
            maximum=pools[queue][1],
            slots=tuple(worker_program_name(queue, s) for s in range(1, pools[queue][1] + 1)),
            per_process=settings.worker_concurrency,
        )
        for queue in chosen
    ]


def node_prefixes(config: PoolConfig) -> dict[str, str]:
    """Celery node name up to the `@` (what a task's `worker` field starts with) -> slot."""
    return {
        worker_node_name(config.queue, slot).split("@", 1)[0] + "@": name
        for slot, name in enumerate(config.slots, start=1)
    }


def slot_of(prefixes: dict[str, str], node: str) -> str | None:
    """The slot of a Celery node name (`short-2@host`), by `node_prefixes`; None: not ours."""
    return prefixes.get(node.split("@", 1)[0] + "@")


def read_load(
    client: redis.Redis, configs: Sequence[PoolConfig]
) -> tuple[dict[str, int], dict[str, int]]:
    """Depth per queue and tasks running per slot (three round trips, two of them pipelined).

    A paused queue's backlog, or any while V1's breaker is open, is no load: its consumers
    do not take it, and more processes would only wait beside them."""
    pipe = client.pipeline(transaction=False)
    for config in configs:
        pipe.llen(config.queue)
    seconds, micros = client.time()
    pipe.zrangebyscore(keys.LEASES, f"({seconds + micros / 1e6}", "+inf")
    pipe.hkeys(keys.PAUSED_QUEUES)
    pipe.hget(keys.BREAKER, "state")
    *lengths, leased, paused, breaker = pipe.execute()
    stalled = {text(name) for name in paused}
    if breaker is not None and text(breaker) == "open":
        stalled.update(config.queue for config in configs)
    depths = {
        config.queue: 0 if config.queue in stalled else int(n)
        for config, n in zip(configs, lengths, strict=True)
    }
    prefixes: dict[str, str] = {}
    for config in configs:
        prefixes.update(node_prefixes(config))
    held: dict[str, int] = {}
    if leased:
        pipe = client.pipeline(transaction=False)
        for task_id in leased:
            pipe.hget(keys.task_key(text(task_id)), "worker")
        for worker in pipe.execute():
            slot = slot_of(prefixes, text(worker) if worker is not None else "")
            if slot is not None:
                held[slot] = held.get(slot, 0) + 1
    return depths, held


def ready_slots(client: redis.Redis, config: PoolConfig) -> set[str]:
    """The pool's slots whose worker has started: it advertises consuming the queue."""
    prefixes = node_prefixes(config)
    names = live_consumers(client, config.queue)
    return {slot for name in names if (slot := slot_of(prefixes, name)) is not None}


def supervisor(url: str) -> Any:
    """An XML-RPC proxy of supervisord at `url` (unix:///path/to/socket or http://...)."""
    # The host part is ignored over a unix socket; the transport carries the real address.
    return xmlrpc.client.ServerProxy(
        "http://127.0.0.1", transport=SupervisorTransport(None, None, url)
    )


class Autoscaler:
    def __init__(
        self, settings: Settings, configs: Sequence[PoolConfig], rpc: Any, client: redis.Redis
    ) -> None:
        self.settings = settings
        self.configs = list(configs)
        self.rpc = rpc
        self.redis = client
        started = time.monotonic()
        # A full cooldown window after start before any drain: no decision on one sample.
        self.states = {c.queue: PoolState(last_change=started) for c in self.configs}
        self.stopping = False
        self.rpc_names: dict[str, str] = {}

    def round(self) -> list[Decision]:
        infos = self.rpc.supervisor.getAllProcessInfo()
        states = {str(info["name"]): str(info["statename"]) for info in infos}
        # supervisord's calls name a process "group:name" (the workers share one group).
        self.rpc_names = {str(info["name"]): f"{info['group']}:{info['name']}" for info in infos}
        depths, held = read_load(self.redis, self.configs)
        now = time.monotonic()
        decisions = []
        for config in self.configs:
            decision = decide(
                config, self.states[config.queue], now, self.settings.autoscale_cooldown,
                states, depths[config.queue], held, ready_slots(self.redis, config),
            )  # fmt: skip
            self._act(config, decision, depths[config.queue], held)
            decisions.append(decision)
        return decisions

    def _act(
        self, config: PoolConfig, decision: Decision, depth: int, held: dict[str, int]
    ) -> None:
        if not decision.start and not decision.drain:
            return
        size = decision.serving + len(decision.start) - len(decision.drain)
        running = sum(held.get(slot, 0) for slot in config.slots)
        log.info(
            "%s: %d -> %d processes (depth %d, running %d, %d per process, min %d, max %d)",
            config.queue, decision.serving, size, depth, running, config.per_process,
            config.minimum, config.maximum,
        )  # fmt: skip
        for name in decision.start:
            try:
                self.rpc.supervisor.startProcess(self.rpc_names.get(name, name), False)
                log.info("%s: started %s", config.queue, name)
            except xmlrpc.client.Fault as exc:  # e.g. it is already starting: next look
                log.warning("%s: could not start %s: %s", config.queue, name, exc.faultString)
        for name in decision.drain:
            try:
                # SIGTERM only (Celery's warm shutdown), never supervisord's stopProcess,
                # which kills whatever still runs after stopwaitsecs.
                self.rpc.supervisor.signalProcess(self.rpc_names.get(name, name), "TERM")
                log.info("%s: draining %s (finishing %d running tasks)",
                         config.queue, name, held.get(name, 0))  # fmt: skip
            except xmlrpc.client.Fault as exc:  # it exited meanwhile: nothing to drain
                self.states[config.queue].draining.discard(name)
                log.warning("%s: could not drain %s: %s", config.queue, name, exc.faultString)

    def run(self) -> None:
        interval = self.settings.autoscale_interval
        pools = ", ".join(f"{c.queue} {c.minimum}-{c.maximum}" for c in self.configs)
        log.info("autoscaler running: %s processes, every %.1f s, cooldown %.0f s",
                 pools, interval, self.settings.autoscale_cooldown)  # fmt: skip
        while not self.stopping:
            began = time.monotonic()
            try:
                self.round()
            except xmlrpc.client.Fault as exc:
                if exc.faultCode == Faults.SHUTDOWN_STATE:
                    log.info("supervisord is stopping the system: the autoscaler stops too")
                    return
                log.warning("autoscaler: no look this round: %s", exc)
            except (redis.RedisError, OSError, xmlrpc.client.Error) as exc:
                # Redis or supervisord unreachable for a moment: keep the pools as they are.
                log.warning("autoscaler: no look this round: %s", exc)
            time.sleep(max(0.0, interval - (time.monotonic() - began)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.autoscaler", description=__doc__)
    parser.add_argument("--queues", help="comma-separated queues to scale (default: all)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    settings = get_settings()
    url = os.environ.get("SUPERVISOR_SERVER_URL")
    if not url:
        log.error("SUPERVISOR_SERVER_URL is unset: run the autoscaler under supervisord")
        return 2
    queues = args.queues.split(",") if args.queues else None
    configs = pool_configs(settings, queues)
    if not configs:
        log.error("nothing to scale (AUTOSCALE=false, or no such queue)")
        return 2
    client = redis_client(settings, socket_timeout=5)  # REDIS_URL, or Sentinel's primary
    scaler = Autoscaler(settings, configs, supervisor(url), client)

    def stop(signum: int, frame: FrameType | None) -> None:
        scaler.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    scaler.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
