# The two commands of the README: `make up` (bring up and run the main job) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CLUSTER := deploy/local/cluster

.PHONY: up example down status test check unit integration venv browser conformance

## make up: install what is missing, build/reuse the pinned binaries, start the local cluster, show it
## healthy, then run the main job: the hybrid example workflow (examples/hybrid) across Slurm and Kueue
up: venv
	$(CLUSTER) up
	$(BIN)/python examples/hybrid/run.py

## make example: run the hybrid example again on the running cluster (a fresh run directory each time)
example: venv
	$(BIN)/python examples/hybrid/run.py

down:
	$(CLUSTER) down

status:
	$(CLUSTER) status

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import ensurepip' 2>/dev/null || { apt-get update -q && apt-get install -y -q python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,plugin]'
	touch $@

## make browser: Chromium from Debian for the report's browser test (apt-get, only when missing)
browser:
	tests/browser/ensure-chromium

## make check: lint, format, types, import layering, and no source file over 500 lines
check: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	@long=$$(git ls-files '*.py' ':!tests/data' | xargs wc -l | awk '$$2 != "total" && $$1 > 500'); \
	if [ -n "$$long" ]; then echo "files over 500 lines (split them):"; echo "$$long"; exit 1; fi

## make test: everything CI runs — checks, unit tests (again under a monotonic clock a few seconds old,
## as on a machine booted moments ago), then integration tests on the local cluster
test: check browser
	$(BIN)/pytest -m "not integration"
	tests/young-clock $(BIN)/pytest -m "not integration" -q -p no:cacheprovider
	$(BIN)/pytest -m integration

unit: venv browser
	$(BIN)/pytest -m "not integration"
	tests/young-clock $(BIN)/pytest -m "not integration" -q -p no:cacheprovider

integration: venv
	$(BIN)/pytest -m integration

## make conformance: snakemake's own test workflows (from its source distribution) as alice on the local
## site: with the local executor, then through converged with every step on Slurm, then on Kueue, each
## compared with its expected results (about an hour; `make test` runs six of them)
conformance: venv
	$(BIN)/python -m tests.conformance
