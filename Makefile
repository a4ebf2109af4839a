# Catalog service. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install run test test-tools lint format services migrate seed bench fuzz clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): requirements/dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip sync --quiet --python $(BIN)/python requirements/dev.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@touch $@

install: $(STAMP) ## Create .venv and install the pinned requirements

run: install ## Migrate and serve on 127.0.0.1:8000 (HOST/PORT); no PostgreSQL or SECRET_KEY? made in .data/
	$(BIN)/catalog dev

services: ## Make sure PostgreSQL and Redis answer (starts local ones that are stopped)
	@scripts/ensure-services.sh

test-tools: ## Install Chromium and promtool for the browser and metrics tests (apt; never fails)
	@scripts/install-test-tools.sh

test: install services test-tools ## Run the whole test suite against real PostgreSQL and Redis
	$(BIN)/python -m pytest

fuzz: install services ## schemathesis, every check, for FUZZ_SECONDS (default 300) against a live server
	FUZZ_SECONDS=$${FUZZ_SECONDS:-300} $(BIN)/python -m pytest -s tests/contract/test_schemathesis.py

lint: install ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check app tests alembic bench
	$(BIN)/ruff format --check app tests alembic bench
	$(BIN)/mypy

format: install ## Format and autofix
	$(BIN)/ruff format app tests alembic bench
	$(BIN)/ruff check --fix app tests alembic bench

migrate: install ## Migrate DATABASE_URL (default: local catalog database) to head
	$(BIN)/catalog migrate

seed: install ## Seed 1000 demo products (make seed N=1000000 for more)
	$(BIN)/catalog seed --products $${N:-1000}

bench: install services ## Service as in production vs a raw-asyncpg ceiling: docs/PERFORMANCE.md (wrk; BENCH_ARGS=--products N --duration S --rounds R)
	@command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install -y wrk" >&2; exit 1; }
	$(BIN)/python -m bench.read_bench $${BENCH_ARGS:-}

clean: ## Remove the virtualenv, caches and the embedded database
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
