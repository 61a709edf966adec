# One command per job, used the same way by people, CI and the docs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test test-unit lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,postgres]'
	touch $(STAMP)

## make run: the whole system (embedded Valkey, V1 simulator, gateway, workers, Flower).
run: install
	$(PY) -m deploy.launcher

## make test: the suite against real components it starts itself, with coverage >= 80 %.
test: install
	rm -f .coverage .coverage.*
	$(PY) -m coverage run -m pytest $(PYTEST_ARGS)
	$(PY) -m coverage combine --quiet
	$(PY) -m coverage report --fail-under=80

## make test-unit: the fast tier (no servers): retry policy, deadlines, routing, script arguments.
test-unit: install
	$(PY) -m pytest -q tests/unit

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy app tasks taskrecord v1sim deploy

## make bench: benchmarks under bench/ (figures + ratios against same-run baselines).
bench: install
	$(PY) -m bench.run_all

clean:
	rm -rf var .coverage .coverage.* .pytest_cache .mypy_cache .ruff_cache
