"""Celery configuration module (`celery -A tasks` loads it): values come from Settings."""

from taskrecord.broker import celery_config
from taskrecord.settings import get_settings

globals().update(celery_config(get_settings()))
