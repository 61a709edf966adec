"""The Celery application factory."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import before_task_publish

from app.settings import Settings
from tasks.config import celery_config

RUN_TASK = "openclaw.run"


def create_celery_app(settings: Settings | None = None) -> Celery:
    """Build the app; without settings, configuration comes from `celeryconfig` lazily."""
    app = Celery("openclaw", set_as_current=settings is None)
    if settings is None:
        app.config_from_object("celeryconfig")
    else:
        app.config_from_object(celery_config(settings))
    app.conf.imports = ("tasks.run", "tasks.queue_control", "tasks.runtime")
    return app


@before_task_publish.connect  # type: ignore[untyped-decorator]
def _redact_arguments(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Flower and events show argsrepr/kwargsrepr: never user text or secrets there.

    Our own task carries only ids; anything else published through this app is redacted.
    """
    if headers is None:
        return
    if headers.get("task") != RUN_TASK:
        headers["argsrepr"] = "(redacted)"
    headers["kwargsrepr"] = "(redacted)"
