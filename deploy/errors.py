"""The launcher's one error type: something it cannot work around, said plainly."""


class LaunchError(Exception):
    """The system cannot be started (or stopped) as asked; the message says what to do."""
