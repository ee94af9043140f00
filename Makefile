# pex-jax: every Python target runs inside .venv, which this Makefile creates and
# refreshes whenever requirements.txt or setup.cfg change.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

SEED ?= 0
ALGO ?= pex
TASK ?=
RUNS ?= runs
SWEEP ?=
OUT ?=
ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help test lint data demo antmaze pointmaze bench report sweep study clean

help: ## show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: SEED=0-9|0,3,7|4  ALGO=pex|direct|buffer|scratch|offline  TASK=<task>  RUNS=<dirs>  SWEEP=<yaml>  ARGS='--config.x=y'"

$(STAMP): requirements.txt setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pex-jax needs Python >= 3.11 (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

test: $(STAMP) ## run the test suite (CPU, tiny datasets, WANDB disabled)
	WANDB_MODE=$${WANDB_MODE:-disabled} JAX_PLATFORMS=$${JAX_PLATFORMS:-cpu} $(PY) -m pytest $(ARGS)

lint: $(STAMP) ## ruff check
	$(VENV)/bin/ruff check pex_jax experiments tests

data: $(STAMP) ## generate the local PointMaze datasets (umaze, medium, large) into MINARI_DATASETS_PATH
	$(PY) -m pex_jax.data.generate --maze=all $(ARGS)

clean: ## remove the venv and caches (keeps runs/ and datasets)
	rm -rf $(VENV) .pytest_cache .ruff_cache
