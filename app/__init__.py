"""OpenClaw V2 gateway: accepts agent messages as tasks and answers at once."""
