"""The worker's Celery application: the broker client plus the task modules."""

from __future__ import annotations

from celery import Celery

from taskrecord.broker import create_client_app
from taskrecord.settings import Settings
from tasks import event_batching


def create_celery_app(settings: Settings | None = None) -> Celery:
    """Build the app; without settings, configuration comes from `celeryconfig` lazily."""
    app = create_client_app(settings)
    app.conf.imports = ("tasks.run", "tasks.queue_control", "tasks.process", "tasks.webhooks")
    event_batching.install(app)
    return app
