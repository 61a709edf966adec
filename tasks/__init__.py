"""Celery workers of OpenClaw V2 (`celery -A tasks worker -P gevent -Q short`)."""

from tasks.celery_app import create_celery_app

# `celery -A tasks` needs a module-level app; its settings load lazily from celeryconfig.
app = create_celery_app()
