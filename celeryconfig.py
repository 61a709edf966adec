"""Celery configuration module (`celery -A tasks` loads it): values come from Settings."""

from app.settings import get_settings
from tasks.config import celery_config

globals().update(celery_config(get_settings()))
