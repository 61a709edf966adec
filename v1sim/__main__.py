"""`python -m v1sim`: serve the V1 simulator with uvicorn.

Environment fallbacks (read here only): V1_TOKEN, SIMULATOR_PORT, SIMULATOR_CAPACITY, V1_AGENTS.
Prefer V1_TOKEN over --token: command lines are visible to every local user.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import uvicorn

from v1sim.server import create_app
from v1sim.state import SimConfig


def _parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m v1sim", description="OpenClaw V1 simulator (not a real V1 gateway)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(env.get("SIMULATOR_PORT", "18790")))
    parser.add_argument("--token", default=env.get("V1_TOKEN"), help="bearer token (or V1_TOKEN)")
    parser.add_argument(
        "--agents", default=env.get("V1_AGENTS") or "main", help="comma-separated agent ids"
    )
    parser.add_argument("--default-agent", default=None, help="agent for calls naming none")
    parser.add_argument(
        "--capacity", type=int, default=int(env.get("SIMULATOR_CAPACITY", "8")), help="max runs"
    )
    parser.add_argument("--overhead", type=float, default=0.0, help="seconds added per run")
    parser.add_argument("--log-level", default="info")
    return parser


def _config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> SimConfig:
    if not args.token:
        parser.error("a token is required: --token or V1_TOKEN")
    try:
        return SimConfig(
            token=args.token,
            host=args.host,
            port=args.port,
            agents=[a.strip() for a in args.agents.split(",") if a.strip()],
            default_agent=args.default_agent,
            capacity=args.capacity,
            overhead_seconds=args.overhead,
        )
    except ValueError as exc:
        parser.error(str(exc))


def main(argv: Sequence[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    config = _config(parser, args)
    level = str(args.log_level).lower()
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        access_log=False,  # one line per call would cost more than the call itself at 1000+
        log_level=level,
        backlog=4096,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
