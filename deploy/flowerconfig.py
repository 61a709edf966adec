"""Flower's configuration file (`celery -A tasks flower --conf=deploy/flowerconfig.py`):
puts Flower's own `/metrics` behind the same authentication as its pages and API.

Flower 2.2 exempts `/metrics` (and `/healthcheck`) from authentication on purpose
(mher/flower#1129) and has no option to change that (mher/flower#1342), so with basic auth
on, anyone who reaches the port could read task names, worker names and counts there.
Flower executes this file at start, before it builds its application; the only thing it
does is swap Flower's metrics handler for one that asks for the current user first, which
with `--basic-auth` / FLOWER_BASIC_AUTH means the same credentials as every page (401
otherwise). Prometheus scrapes it with `basic_auth` in its scrape config. `/healthcheck`
(it answers "OK" and nothing else) stays open for liveness probes.

Tornado reads every top-level name of this file that matches one of its options as that
option (`logging`, `port`, `auth`...): keep the names here private.
"""

from __future__ import annotations

from typing import Any

import tornado.web
from flower import urls as _flower_urls
from flower.views.monitor import Metrics as _FlowerMetrics


class _AuthenticatedMetrics(_FlowerMetrics):  # type: ignore[misc]
    def prepare(self) -> Any:
        # `current_user` runs Flower's own check: it raises 401 on missing or wrong basic
        # credentials, and is None when OAuth is on and nobody is logged in.
        if self.current_user is None:
            raise tornado.web.HTTPError(401)
        return super().prepare()


def _close_metrics() -> None:
    """Replace the `/metrics` route in Flower's handler list (read when Flower starts)."""
    handlers = _flower_urls.handlers
    for index, handler in enumerate(handlers):
        if isinstance(handler, tuple) and handler[0] == r"/metrics":
            handlers[index] = (r"/metrics", _AuthenticatedMetrics)


_close_metrics()
