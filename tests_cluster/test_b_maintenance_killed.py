"""Scenario 6: two maintenance instances on different hosts (w-priority, gw-b).

Running two is safe without a leader: every step takes its item atomically in Valkey
(recover.lua fences a lease recovery with a fresh token, take_due.lua ZREMs a due task
before publishing it, restore_orphan.lua and the webhook/schedule claims likewise), so of
two instances racing for one item exactly one acts. Shown first with both alive (each lost
task recovered once), then the instance on w-priority is SIGKILLed and the one on gw-b alone
carries on: lease sweeps, due retries and the write-behind copy into PostgreSQL.
"""

from __future__ import annotations

import time

import redis
import sqlalchemy as sa

from taskrecord.store.models import TaskRow
from testbed.process import wait_until
from tests_cluster.cluster import Cluster
from tests_cluster.observe import (
    api,
    events,
    live,
    new_tags,
    report,
    submit,
    v1_calls,
    wait_all_terminal,
)

SILENT = "thinks before answering [sim:delay=4]"
FLAKY = "V1 fails once [sim:fail=500x1]"
RECOVERED = "lease expired"


def _lose_a_short_worker(cluster: Cluster, rds: redis.Redis, ids: list[str]) -> set[str]:
    """SIGKILL the worker process (w-short or the spare on w-long) that runs the most of
    `ids` once one runs >= 2 of them; the tasks it held. It is started again at once."""

    def held() -> dict[str, set[str]]:
        by_host: dict[str, set[str]] = {"w-short": set(), "w-long": set()}
        for task_id, f in live(rds, ids).items():
            host = f.get("worker", "").partition("@")[0]
            if f.get("state") == "running" and host in by_host:
                by_host[host].add(task_id)
        return by_host

    def ready() -> bool:
        # Only once every task is claimed: a worker killed while fetching can lose the
        # message it was taking (kombu's BRPOP-then-unacked gap; see deploy/README.md).
        claimed = all(f.get("state") != "queued" for f in live(rds, ids).values())
        return claimed and max(map(len, held().values())) >= 2

    wait_until(ready, 30, 0.1, "a short worker to run two, all claimed")
    host = max(held().items(), key=lambda item: len(item[1]))[0]
    cluster.procs[f"worker@{host}"].kill()
    victims = held()[host]
    cluster.restart(f"worker@{host}")
    return victims


def _recoveries(cluster: Cluster, role: str) -> int:
    return cluster.procs[role].log().count(RECOVERED)


def test_one_maintenance_killed_the_other_carries_on(cluster: Cluster) -> None:
    assert cluster.sim is not None and cluster.postgres is not None
    m1, m2 = "maintenance@w-priority", "maintenance@gw-b"
    rds = cluster.redis()
    with api(cluster.gateway_url("gw-a")) as client:
        # Both alive: each lost task is recovered by exactly one of them, once.
        tags = new_tags("s6a", 10)
        ids = {submit(client, SILENT, tag): tag for tag in tags}
        before = {role: _recoveries(cluster, role) for role in (m1, m2)}
        both_victims = _lose_a_short_worker(cluster, rds, list(ids))
        wait_all_terminal(client, list(ids), 60)
        by_both = {role: _recoveries(cluster, role) - before[role] for role in (m1, m2)}
        requeues = {t: sum(e["type"] == "retrying" for e in events(rds, t)) for t in both_victims}
        calls_a = v1_calls(cluster.sim, tags)

        # m1 dies; m2 alone: lease sweeps, due retries, write-behind.
        cluster.procs[m1].kill()
        killed_at = time.time()
        before_m2 = _recoveries(cluster, m2)
        flaky_tags = new_tags("s6r", 4)
        flaky = {submit(client, FLAKY, tag): tag for tag in flaky_tags}
        ended = wait_all_terminal(client, list(flaky), 60)
        tags_b = new_tags("s6b", 10)
        ids_b = {submit(client, SILENT, tag): tag for tag in tags_b}
        alone_victims = _lose_a_short_worker(cluster, rds, list(ids_b))
        ended.update(wait_all_terminal(client, list(ids_b), 60))
        recovered_by_m2 = _recoveries(cluster, m2) - before_m2
    calls_b = v1_calls(cluster.sim, [*tags_b, *flaky_tags])
    terminal = {t: sum(e["type"] in ("succeeded", "failed") for e in events(rds, t))
                for t in [*ids, *ids_b, *flaky]}  # fmt: skip
    rds.close()

    every = [*ids, *ids_b, *flaky]
    engine = sa.create_engine(cluster.postgres.url)

    def rows() -> dict[str, str]:
        with engine.connect() as conn:
            query = sa.select(TaskRow.id, TaskRow.state).where(TaskRow.id.in_(every))
            return {row.id: row.state for row in conn.execute(query)}

    wait_until(lambda: len(rows()) == len(every), 30, 0.5, "every task's row in PostgreSQL")
    in_sql = rows()
    engine.dispose()
    report(
        "6 maintenance killed",
        recovered_while_both_alive=len(both_victims),
        recoveries_by=by_both,
        requeue_events_per_lost_task=sorted(set(requeues.values())),
        recovered_after_kill=len(alone_victims),
        recovered_by_survivor=recovered_by_m2,
        retries_published=sum(ended[t]["attempts"] == 2 for t in flaky),
        duplicate_v1_calls=sum(len(c) - 1 for c in [*calls_a.values(), *calls_b.values()]),
        rows_in_postgres=f"{len(in_sql)}/{len(every)}",
        seconds_after_kill=round(time.time() - killed_at, 1),
    )
    assert both_victims and alone_victims
    # Both alive: one recovery per lost task between them, one re-queue, one end.
    assert sum(by_both.values()) == len(both_victims)
    assert set(requeues.values()) == {1}
    assert all(count == 1 for count in terminal.values()), terminal
    for task_id, tag in ids.items():
        # A lost task calls V1 again only if its first call had begun (a worker may die
        # between claiming and calling); never a third time.
        assert len(calls_a[tag]) == 1 or (task_id in both_victims and len(calls_a[tag]) == 2)
    # m2 alone did every recovery and published every retry.
    assert not cluster.procs[m1].alive()
    assert recovered_by_m2 == len(alone_victims)
    for task_id, tag in ids_b.items():
        assert ended[task_id]["state"] == "succeeded", ended[task_id]
        assert len(calls_b[tag]) == 1 or (task_id in alone_victims and len(calls_b[tag]) == 2)
    for task_id, tag in flaky.items():
        assert ended[task_id]["state"] == "succeeded" and ended[task_id]["attempts"] == 2
        assert [r["status"] for r in calls_b[tag]] == [500, 200]
    assert set(in_sql.values()) == {"succeeded"}
