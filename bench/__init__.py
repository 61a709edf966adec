"""Benchmarks of OpenClaw V2 against same-run baselines (`make bench`)."""
