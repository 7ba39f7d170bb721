# petr4-forecast: every task a developer runs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first and pinned: this CPU build is what every later requirement must accept
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

.PHONY: setup
setup: $(STAMP) ## create .venv and install the project with every extra

.PHONY: test
test: $(STAMP) ## run every test tier (e2e skips where no Docker daemon answers)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: $(STAMP) ## run the unit tests only
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

.PHONY: lint
lint: $(STAMP) ## ruff lint and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

.PHONY: format
format: $(STAMP) ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

.PHONY: clean
clean: ## remove caches, demo state and reports (keeps .venv)
	rm -rf .cache demo bench/reports .pytest_cache .ruff_cache lightning_logs
