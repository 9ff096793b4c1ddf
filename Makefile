# The two commands of the README: `make up` (bring up and run the main job) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CLUSTER := deploy/local/cluster

.PHONY: up down status test check unit integration venv

## make up: install what is missing, build/reuse the pinned binaries, start the local cluster, show it healthy
up:
	$(CLUSTER) up

down:
	$(CLUSTER) down

status:
	$(CLUSTER) status

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,plugin]'
	touch $@

## make check: lint, format, types and import layering
check: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

## make test: everything CI runs — checks, unit tests, then integration tests on the local cluster
test: check
	$(BIN)/pytest -m "not integration"
	$(BIN)/pytest -m integration

unit: venv
	$(BIN)/pytest -m "not integration"

integration: venv
	$(BIN)/pytest -m integration
