"""Benchmarks of OpenClaw V2 against same-run baselines (`make bench`, `python -m bench.run_all`)."""
