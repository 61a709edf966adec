"""Scenario 5: PostgreSQL stopped for 30 s (the issue's figure) under load, then started.

Submitting never needs SQL (the task is created in Valkey; maintenance copies it into SQL
afterwards), so every submit during the outage gets its 202 and every task runs. /readyz
on both gateways says `sql: error` meanwhile. Afterwards the write-behind catches up: every
task has its row, in the state the task ended in, including tasks that were running when
PostgreSQL went away and ended during the outage."""

from __future__ import annotations

import contextlib
import time

import httpx
import sqlalchemy as sa

from taskrecord.store.models import TaskRow
from testbed.process import wait_until
from tests_cluster.cluster import Cluster
from tests_cluster.observe import (
    TERMINAL,
    api,
    live,
    new_tags,
    report,
    states,
    submit,
    wait_all_terminal,
)

OUTAGE_SECONDS = 30.0
RUNNING_THROUGH = "still working when the database goes [sim:delay=4]"
QUICK = "quick one"


def test_postgres_stopped_mid_load(cluster: Cluster) -> None:
    pg = cluster.postgres
    assert pg is not None
    engine = sa.create_engine(pg.url, pool_pre_ping=True)
    gateways = [cluster.gateway_url(name) for name in ("gw-a", "gw-b")]

    def rows(ids: list[str]) -> dict[str, str]:
        with engine.connect() as conn:
            query = sa.select(TaskRow.id, TaskRow.state).where(TaskRow.id.in_(ids))
            return {row.id: row.state for row in conn.execute(query)}

    readiness: list[tuple[float, int, str]] = []

    def probe() -> None:
        for url in gateways:
            try:
                response = httpx.get(f"{url}/readyz", timeout=6, trust_env=False)
                readiness.append((time.time(), response.status_code,
                                  response.json()["checks"]["sql"]))  # fmt: skip
            except httpx.HTTPError as exc:
                readiness.append((time.time(), 0, type(exc).__name__))

    rds = cluster.redis()
    with api(gateways[0]) as client:
        before = [submit(client, RUNNING_THROUGH, tag) for tag in new_tags("s5a", 8)]
        wait_until(lambda: len(rows(before)) == len(before), 30, 0.2, "rows of the first tasks")
        engine.dispose()
        pg.halt()
        down_at = time.time()
        during: list[str] = []
        tags = iter(new_tags("s5b", int(OUTAGE_SECONDS) + 5))
        while time.time() - down_at < OUTAGE_SECONDS:  # bounded: one submit + probe a second
            during.append(submit(client, QUICK, next(tags)))
            probe()
            time.sleep(max(0.0, 1.0 - (time.time() - down_at) % 1.0))
        outage_readiness = list(readiness)
        every = [*before, *during]
        ended_in_outage = {t: f["state"] for t, f in live(rds, every).items()
                           if f.get("state") in TERMINAL}  # fmt: skip
        pg.resume()
        up_at = time.time()
        ended = wait_all_terminal(client, every, 60)
        all_ended_after = time.time() - up_at
        final = {t: body["state"] for t, body in ended.items()}

        def caught_up() -> bool:
            try:
                return rows(every) == final
            except sa.exc.OperationalError:
                return False

        with contextlib.suppress(AssertionError):  # counted below
            wait_until(caught_up, 30, 0.5, "the SQL store to catch up")
        in_sql = rows(every)
        engine.dispose()
        caught_up_after = time.time() - up_at

        def ready_again() -> bool:
            probe()
            return readiness[-1][1] == readiness[-2][1] == 200

        wait_until(ready_again, 30, 0.5, "both gateways ready again")
    rds.close()
    missing = [t for t in every if t not in in_sql]
    unready = sum(code == 503 for _, code, _ in outage_readiness)
    stale = [t for t in every if t in in_sql and in_sql[t] != final[t]]
    report(
        "5 postgres stopped",
        outage_seconds=OUTAGE_SECONDS,
        tasks=len(every),
        running_when_stopped=len(before),
        accepted_during_outage=len(during),
        ended_during_outage=len(ended_in_outage),
        seconds_after_restart_to_all_ended=round(all_ended_after, 1),
        states=states(ended),
        readyz_503_during_outage=f"{unready}/{len(outage_readiness)}",
        rows_missing=len(missing),
        rows_stale=len(stale),
        stale_rows_say=sorted({in_sql[t] for t in stale}),
        seconds_to_catch_up=round(caught_up_after, 1),
    )
    assert all(code == 503 and sql.startswith("error") for _, code, sql in outage_readiness)
    assert not missing and not stale
    # No task stuck: everything submitted before or during the outage ends during it.
    assert len(ended_in_outage) == len(every)
