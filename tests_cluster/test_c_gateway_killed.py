"""Scenario 3: the gateway host gw-a dies (every process SIGKILLed) while clients follow
tasks through it over SSE (one stream per task) and WebSocket (one socket for all). Each
client reconnects to gw-b with its cursors and gets every event of every task exactly once,
in order: compared with the task's event log in Valkey."""

from __future__ import annotations

import threading
import time

from testbed.process import wait_until
from tests_cluster.cluster import Cluster
from tests_cluster.followers import Follower, SseFollower, WsFollower
from tests_cluster.observe import api, events, new_tags, report, submit, wait_all_terminal

STREAMING = "answers slowly [sim:chunks=40] [sim:chunk_delay=0.2]"  # ~8 s of progress


def test_gateway_host_killed_while_clients_follow(cluster: Cluster) -> None:
    gateways = [cluster.gateway_url("gw-a"), cluster.gateway_url("gw-b")]
    with api(gateways[1]) as client:
        ids = [submit(client, STREAMING, tag) for tag in new_tags("s3", 6)]
        deadline = time.time() + 90
        followers: list[Follower] = [SseFollower(gateways, [t], deadline) for t in ids]
        followers.append(WsFollower(gateways, ids, deadline))
        threads = [threading.Thread(target=f.run, daemon=True) for f in followers]  # type: ignore[attr-defined]
        for thread in threads:
            thread.start()

        def streaming() -> bool:
            return all(len(got) >= 3 for f in followers for got in f.received.values())

        wait_until(streaming, 30, 0.1, "every follower to receive events through gw-a")
        before = sum(len(got) for f in followers for got in f.received.values())
        killed_at = time.time()
        pids = cluster.host("gw-a").kill_all()
        for thread in threads:
            thread.join(max(0.0, deadline - time.time()))
        wait_all_terminal(client, ids, 30)
    rds = cluster.redis()
    logs = {t: [e["seq"] for e in events(rds, t)] for t in ids}
    rds.close()

    exact = 0
    for follower in followers:
        for task_id, got in follower.received.items():
            exact += [e["seq"] for e in got] == logs[task_id]
    switched = [f.first_event_after_switch - killed_at for f in followers
                if f.first_event_after_switch is not None]  # fmt: skip
    report(
        "3 gateway host killed",
        tasks=len(ids),
        sse_clients=len(ids),
        ws_clients=1,
        events_in_logs=sum(map(len, logs.values())),
        events_before_kill=before,
        streams_exact_once_in_order=f"{exact}/{len(ids) * 2}",
        reconnected=sum(f.reconnects > 0 for f in followers),
        max_seconds_kill_to_next_event=round(max(switched), 2) if switched else None,
    )
    assert pids
    assert not any(thread.is_alive() for thread in threads)
    assert all(f.reconnects >= 1 for f in followers), "a client never lost gw-a"
    for follower in followers:
        for task_id, got in follower.received.items():
            assert [e["seq"] for e in got] == logs[task_id], (type(follower).__name__, task_id)
