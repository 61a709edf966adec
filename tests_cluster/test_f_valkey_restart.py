"""Scenario 4: Valkey SIGKILLed mid-load and started again on its AOF.

Policy: `appendonly yes`, `appendfsync everysec` (deploy/embedded_valkey.py). Valkey
write(2)s each command to the AOF before it answers, so a killed *process* loses no
acknowledged write: every task that got its 202 is in the replayed AOF. What everysec
leaves open is the *machine* losing power: up to about a second (two at worst) of writes
not yet fsync'ed, i.e. 202s given in that last second. A namespace cannot lose power, so
this test checks the process case; the machine case is the stated window.
"""

from __future__ import annotations

import threading
import time

import httpx

from taskrecord import keys
from testbed.process import wait_until
from tests_cluster.cluster import Cluster
from tests_cluster.observe import api, new_tags, report, states, v1_calls, wait_all_terminal

WORK = "quick answer [sim:chunks=10] [sim:chunk_delay=0.1]"
SUBMITS = 60
DOWN_SECONDS = 3.0


def test_valkey_killed_and_restarted_mid_load(cluster: Cluster) -> None:
    valkey, sim = cluster.valkey, cluster.sim
    assert valkey is not None and sim is not None
    tags = new_tags("s4", SUBMITS)
    accepted: dict[str, str] = {}
    refused: list[str] = []
    gateways = [cluster.gateway_url("gw-a"), cluster.gateway_url("gw-b")]

    def load() -> None:
        """Bounded: SUBMITS submits, about six a second, alternating gateways."""
        clients = [api(url) for url in gateways]
        for i, tag in enumerate(tags):
            body = {"message": f"{WORK} [sim:tag={tag}]"}
            try:
                response = clients[i % 2].post("/v1/tasks", json=body)
                if response.status_code == 202:
                    accepted[response.json()["task_id"]] = tag
                else:
                    refused.append(str(response.status_code))
            except httpx.HTTPError as exc:
                refused.append(type(exc).__name__)
            time.sleep(0.15)
        for client in clients:
            client.close()

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    wait_until(lambda: len(accepted) >= 15, 30, 0.05, "load to be under way")
    valkey.kill()
    killed_at = time.time()
    accepted_before_kill = len(accepted)
    wait_until(lambda: time.time() - killed_at >= DOWN_SECONDS, DOWN_SECONDS + 1, 0.1, "outage")
    valkey.restart()
    restarted_at = time.time()
    loader.join(60)
    rds = cluster.redis()
    in_aof = sum(rds.exists(keys.task_key(t)) for t in accepted)
    with api(gateways[1]) as client:
        ended = wait_all_terminal(client, list(accepted), 120)
    all_ended_after = time.time() - restarted_at
    rds.close()
    calls = v1_calls(sim, list(accepted.values()))
    report(
        "4 valkey killed",
        appendfsync="everysec",
        submits=SUBMITS,
        accepted_202=len(accepted),
        accepted_before_kill=accepted_before_kill,
        refused_while_down=len(refused),
        refusals=sorted(set(refused)),
        accepted_found_after_restart=in_aof,
        lost=len(accepted) - len(ended),
        states=states(ended),
        failed_because=sorted(
            {
                str((b.get("error") or {}).get("type"))
                for b in ended.values()
                if b["state"] == "failed"
            }
        ),
        duplicate_v1_calls=sum(max(0, len(c) - 1) for c in calls.values()),
        seconds_restart_to_all_ended=round(all_ended_after, 1),
    )
    assert not loader.is_alive()
    assert in_aof == len(accepted)
    assert len(ended) == len(accepted)
