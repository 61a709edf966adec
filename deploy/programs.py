"""The programs `make run` runs, and the environment they get.

One plan shared by the supervisord config the launcher writes and the tests that check it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from deploy.embedded_valkey import EmbeddedValkey
from deploy.endpoints import LOOPBACK, Endpoints
from deploy.errors import LaunchError
from deploy.layout import Layout
from taskrecord.settings import Settings

QUEUES = ("priority", "short", "long")
# Flower's config file: puts its /metrics behind its basic auth (see the file).
FLOWER_CONFIG = Path(__file__).with_name("flowerconfig.py")

# supervisord starts programs in ascending priority and stops them in descending priority,
# one program after the other. So: Redis and V1 first; on the way down the gateway stops
# taking tasks before the workers drain, and the workers drain while Redis and V1 still run.
_PRIORITY = {
    "valkey": 10,
    "v1sim": 20,
    "worker": 100,
    "autoscaler": 150,  # stops before the workers, so it starts none during a shutdown
    "maintenance": 200,
    "gateway": 300,
    "flower": 400,
}


@dataclass(frozen=True)
class Program:
    """One supervisord program."""

    name: str
    command: tuple[str, ...]
    priority: int
    # Seconds a graceful stop (SIGTERM) may take before supervisord kills the process group.
    stopwaitsecs: int
    # Settings for this program only (no secrets: they are written to the config file).
    environment: tuple[tuple[str, str], ...] = ()
    autostart: bool = True
    # supervisord's autorestart: "true", or "unexpected" (not after a clean exit, code 0).
    autorestart: str = "true"
    # supervisord group ("" none). supervisord stops one group at a time, waiting for each
    # to end: the workers share one, so a shutdown warm-stops them all at once instead of
    # one after another (an idle worker takes 1-9 s; 11 of them in turn took 41 s).
    group: str = ""


# Seed lifetimes: short-task workers recycle after 5 min, long-task ones after 1 h.
WORKER_LIFETIMES = {"priority": 300, "short": 300, "long": 3600}
# Two workers per queue, the second living half as long again, so they do not come due
# together; a worker past its lifetime drains only while the other consumes its queue
# (tasks/recycling.py), so a queue never waits without a consumer.
WORKER_SLOTS = (1, 2)
LIFETIME_SPREAD = {1: 1.0, 2: 1.5}
AUTOSCALER = "autoscaler"
WORKERS_GROUP = "workers"


def autoscaled_pools(settings: Settings) -> dict[str, tuple[int, int]]:
    """Queue -> (fewest, most) worker processes the autoscaler keeps (none when it is off).

    `priority` keeps its two fixed workers: it takes only the few priority > 8 tasks."""
    if not settings.autoscale:
        return {}
    pools = {
        "short": (settings.autoscale_short_min, settings.autoscale_short_max),
        "long": (settings.autoscale_long_min, settings.autoscale_long_max),
    }
    for queue, (low, high) in pools.items():
        if low > high:
            raise LaunchError(f"AUTOSCALE_{queue.upper()}_MIN ({low}) is above its MAX ({high})")
    return pools


def worker_program_name(queue: str, slot: int = 1) -> str:
    return f"worker-{queue}" if slot == 1 else f"worker-{queue}-{slot}"


def worker_node_name(queue: str, slot: int = 1) -> str:
    """Celery's node name (`-n`): unique per worker, `%h` is the host name."""
    return f"{queue}@%h" if slot == 1 else f"{queue}-{slot}@%h"


def plan_programs(
    settings: Settings, endpoints: Endpoints, layout: Layout, python: str
) -> list[Program]:
    """Every program of the system, in start order."""
    programs: list[Program] = []
    if endpoints.valkey_port is not None:
        valkey = EmbeddedValkey(data_dir=layout.valkey_dir, port=endpoints.valkey_port)
        # Without --logfile Valkey logs to stdout, which supervisord writes to
        # var/log/valkey.log like every other program's output.
        command = _without_option(valkey.command(), "--logfile")
        programs.append(Program("valkey", command, _PRIORITY["valkey"], stopwaitsecs=20))
    if endpoints.simulator_port is not None:
        # The V1 token reaches the simulator as V1_TOKEN in its environment (see
        # secret_environment), never on the command line where `ps` would show it.
        command = (
            python, "-m", "v1sim",
            "--host", LOOPBACK,
            "--port", str(endpoints.simulator_port),
            "--agents", ",".join(simulator_agents(settings)),
            "--capacity", str(settings.simulator_capacity),
        )  # fmt: skip
        programs.append(Program("v1sim", command, _PRIORITY["v1sim"], stopwaitsecs=10))
    pools = autoscaled_pools(settings)
    for queue in QUEUES:
        if queue in pools:
            # One program per possible process; the first `min` start with the system, the
            # autoscaler starts and drains the others. A clean exit (drained by the
            # autoscaler, or recycled) is the autoscaler's to replace, not supervisord's;
            # a crash is still restarted at once.
            low, high = pools[queue]
            for slot in range(1, high + 1):
                worker = _worker_program(settings, python, queue, slot)
                programs.append(replace(worker, autostart=slot <= low, autorestart="unexpected"))
        else:
            for slot in WORKER_SLOTS:
                programs.append(_worker_program(settings, python, queue, slot))
    if pools:
        programs.append(
            Program(
                AUTOSCALER,
                (python, "-m", "deploy.autoscaler"),
                _PRIORITY["autoscaler"],
                stopwaitsecs=10,
            )
        )
    programs.append(
        Program(
            "maintenance",
            (python, "-m", "tasks.maintenance"),
            _PRIORITY["maintenance"],
            stopwaitsecs=15,
        )
    )
    # GATEWAY_WORKERS > 1: uvicorn's supervising process and its workers, one program
    # (supervisord stops and kills them as a group).
    gateway_env = (("GATEWAY_WORKERS", str(settings.gateway_workers)),)
    programs.append(
        Program("gateway", (python, "-m", "app"), _PRIORITY["gateway"], 15, gateway_env)
    )
    # Basic auth reaches Flower as FLOWER_BASIC_AUTH (Flower reads FLOWER_<option>), not as
    # --basic-auth on the command line.
    flower = (
        python, "-m", "celery", "-A", "tasks", "flower",
        f"--address={LOOPBACK}",
        f"--port={settings.flower_port}",
        f"--conf={FLOWER_CONFIG}",
    )  # fmt: skip
    programs.append(Program("flower", flower, _PRIORITY["flower"], stopwaitsecs=10))
    return programs


def _worker_program(settings: Settings, python: str, queue: str, slot: int) -> Program:
    # Niced from its exec, not only once Celery's worker_init runs (tasks/process.py): the
    # 1-2 s of CPU its imports take, as the autoscaler starts several during a burst of
    # submits, already come after the gateway's.
    niced = ("nice", "-n", str(settings.worker_nice)) if settings.worker_nice else ()
    command = (
        *niced,
        python, "-m", "celery", "-A", "tasks", "worker",
        "-P", "gevent",
        "-Q", queue,
        "-n", worker_node_name(queue, slot),
        # Celery's autoscaler grows the gevent pool with the load, up to the cap.
        "--autoscale", f"{settings.worker_concurrency},{min(5, settings.worker_concurrency)}",
        "-E",
        "-l", "INFO",
    )  # fmt: skip
    # Slots past the second spread between 1.1 and 1.5 times the lifetime.
    spread = LIFETIME_SPREAD.get(slot, 1.1 + 0.1 * ((slot - 3) % 5))
    lifetime = round(WORKER_LIFETIMES[queue] * spread)
    # 30 s lets short tasks finish (warm shutdown); a longer task is killed and re-run
    # from its lease by another worker, so waiting longer would only delay the stop.
    return Program(
        worker_program_name(queue, slot),
        command,
        _PRIORITY["worker"],
        stopwaitsecs=30,
        environment=(("WORKER_MAX_LIFETIME", str(lifetime)),),
        group=WORKERS_GROUP,
    )


def _without_option(argv: list[str], option: str) -> tuple[str, ...]:
    """`argv` minus every `option value` pair."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        else:
            kept.append(arg)
    return tuple(kept)


def simulator_agents(settings: Settings) -> list[str]:
    """The agents the simulator serves: the known ones plus the default (else tasks that
    name no agent would fail against it)."""
    agents = list(settings.v1_agents)
    if settings.v1_default_agent not in agents:
        agents.append(settings.v1_default_agent)
    return agents


def shared_environment(settings: Settings, endpoints: Endpoints, layout: Layout) -> dict[str, str]:
    """Variables the launcher decides for every program; written into the config file.

    Only what the launcher chose goes here: a REDIS_URL or V1_URL the operator set reaches
    the programs unchanged through the inherited environment (and may hold a password, which
    has no place in a file).
    """
    env = {"PYTHONUNBUFFERED": "1", "VAR_DIR": str(layout.var_dir)}
    if endpoints.embedded_valkey:
        env["REDIS_URL"] = endpoints.redis_url
    if endpoints.simulated_v1:
        env["V1_URL"] = endpoints.v1_url
    if "database_url" not in settings.model_fields_set:
        # The default SQLite path is ./var/...; follow VAR_DIR when it points elsewhere.
        env["DATABASE_URL"] = f"sqlite:///{layout.var_dir / 'openclaw.db'}"
    return env


def secret_environment(settings: Settings) -> dict[str, str]:
    """Secrets the programs need, handed to supervisord's own environment (which every
    program inherits) so they appear neither in the config file nor on a command line."""
    user = settings.flower_user
    password = settings.flower_password.get_secret_value()
    if "," in user or "," in password or ":" in user:
        # Flower splits FLOWER_BASIC_AUTH on commas and the pair on the first colon.
        raise LaunchError("FLOWER_USER must not contain ',' or ':', FLOWER_PASSWORD no ','")
    return {
        # Explicit, so the simulator and the workers agree even when V1_TOKEN is unset.
        "V1_TOKEN": settings.v1_token.get_secret_value(),
        "FLOWER_BASIC_AUTH": f"{user}:{password}",
    }
