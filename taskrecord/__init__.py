"""The task record and its rules: settings, live record and its Lua transitions, SQL store,
control, scheduling inputs and the Celery message, shared by the gateway (`app`) and the
workers (`tasks`). Imports neither of them."""
