# Fresh machine: `make quickstart` (installs, then runs the quickstart suite) and `make test`.
PY ?= .venv/bin/python
TEST_ARGS ?=

.PHONY: setup quickstart test lint format

setup:
	bash tools/setup_env.sh

quickstart: setup
	$(PY) -m benchmarks.cli run benchmarks/suites/quickstart.yaml

test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -q $(TEST_ARGS)

lint:
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format:
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .
