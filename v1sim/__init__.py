"""V1 simulator: a stand-in for the OpenClaw V1 gateway, for tests, benchmarks and `make run`.

It is not V1: it runs no agents and answers with predictable text. Every response carries
`x-openclaw-simulator: 1`.
"""

from v1sim.server import create_app
from v1sim.state import SimConfig

__all__ = ["SimConfig", "create_app"]
