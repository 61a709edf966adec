"""`tasks.watchers.PeriodicWatcher`: a failed round is tried again after `retry_interval`,
not a whole interval (the lease renewer: a Sentinel failover must not outlast leases just
because the renewer waited an interval after Redis came back)."""

from __future__ import annotations

import gevent
from gevent.event import Event

from tasks.watchers import PeriodicWatcher


class Flaky(PeriodicWatcher):
    name = "flaky watcher"
    interval = 30.0
    retry_interval = 0.01

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.rounds = 0
        self.recovered = Event()

    def round(self) -> None:
        self.rounds += 1
        if self.rounds <= self.failures:
            raise ConnectionError("redis is away")
        self.recovered.set()


def test_a_failed_round_is_tried_again_soon_and_a_good_one_waits_the_interval() -> None:
    watcher = Flaky(failures=3)
    watcher.start()
    try:
        assert watcher.recovered.wait(timeout=5), watcher.rounds  # 3 retries, not 90 s
        gevent.sleep(0.1)
        assert watcher.rounds == 4  # after a good round: the whole interval
    finally:
        watcher.greenlet.kill()
