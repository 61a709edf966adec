"""Running OpenClaw V2: the `make run` launcher and the production deployment files."""
