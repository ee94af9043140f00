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
SOURCE ?= d4rl
RUNS ?= runs
SWEEP ?=
OUT ?=
ARGS ?=
MULTITASK ?= 1
RUN ?=

.DEFAULT_GOAL := help
.PHONY: help test lint data demo antmaze pointmaze bench report sweep study clean

ANTMAZE_TASKS := umaze umaze-diverse medium-play medium-diverse large-play large-diverse
POINTMAZE_TASKS := umaze medium large
TRAIN := $(PY) -m pex_jax.train
NOW := $(shell date +%Y%m%d-%H%M%S)
AM_RUN = $(or $(RUN),runs/antmaze/$(NOW))
PM_RUN = $(or $(RUN),runs/pointmaze/$(NOW))

help: ## show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: SEED=0-9|0,3,7|4  ALGO=pex|direct|buffer|scratch|offline  TASK=<task>  SOURCE=d4rl|minari|local  RUN=<dir>  MULTITASK=0|1  RUNS=<dirs>  SWEEP=<yaml>  ARGS='--config.x=y'"

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

demo: $(STAMP) ## offline -> online (offline, direct, pex) on a small local PointMaze dataset in minutes
	WANDB_MODE=$${WANDB_MODE:-disabled} $(PY) experiments/demo.py $(ARGS)

antmaze: $(STAMP) ## AntMaze: SEED=0-9 ALGO=pex TASK=<task[,task]> SOURCE=d4rl|minari|local RUN=<dir> ARGS=...
	@set -e; case "$(SOURCE)" in d4rl) sfx=-d4rl;; minari) sfx=;; local) sfx=-local;; \
	  *) echo "error: SOURCE=$(SOURCE) is not a data source; use SOURCE=d4rl (original D4RL files, the default), SOURCE=minari (Minari D4RL/antmaze/*-v1) or SOURCE=local (generated here)" >&2; exit 2;; esac; \
	tasks=""; for t in $$(echo '$(or $(TASK),$(ANTMAZE_TASKS))' | tr , ' '); do \
	  case "$$t" in *-d4rl|*-local) tasks="$$tasks $$t";; *) tasks="$$tasks $$t$$sfx";; esac; done; \
	if [ "$(MULTITASK)" = 1 ] && [ "$(ALGO)" != buffer ] && [ "$(ALGO)" != scratch ]; then \
	  echo "== antmaze offline pre-training, all tasks x seeds $(SEED) per device call -> $(AM_RUN)"; \
	  $(PY) -m pex_jax.pretrain --config=experiments/configs/antmaze.py --tasks="$$(echo $$tasks | tr ' ' ,)" \
	    --config.seeds=$(SEED) --config.algo=$(ALGO) --config.run_dir=$(AM_RUN) $(ARGS); \
	  pretrained=1; \
	else pretrained=0; fi; \
	for t in $$tasks; do \
	  dir=$(AM_RUN)/antmaze-$$t/$(ALGO); \
	  if [ -f $$dir/summary.json ]; then echo "== antmaze $$t / $(ALGO): done ($$dir)"; continue; fi; \
	  echo "== antmaze $$t / $(ALGO) / seeds $(SEED) -> $$dir"; \
	  pre=""; if [ $$pretrained = 1 ]; then pre="--config.offline_checkpoint=$(AM_RUN)/antmaze-$$t/offline"; fi; \
	  $(TRAIN) --config=experiments/configs/antmaze.py:$$t --config.seeds=$(SEED) --config.algo=$(ALGO) \
	    --config.run_dir=$$dir $$pre $(ARGS); \
	done; \
	$(PY) -m pex_jax.report --runs $(AM_RUN) --out $(AM_RUN)/report

pointmaze: $(STAMP) ## PointMaze on the local datasets (generated if missing): SEED=0-2 ALGO=pex TASK=<task[,task]> RUN=<dir>
	@set -e; for t in $$(echo '$(or $(TASK),$(POINTMAZE_TASKS))' | tr , ' '); do \
	  $(PY) -m pex_jax.data.generate --maze=$${t%%-*} --skip-existing --no-progress; \
	  dir=$(PM_RUN)/pointmaze-$$t/$(ALGO); \
	  if [ -f $$dir/summary.json ]; then echo "== pointmaze $$t / $(ALGO): done ($$dir)"; continue; fi; \
	  echo "== pointmaze $$t / $(ALGO) / seeds $(SEED) -> $$dir"; \
	  $(TRAIN) --config=experiments/configs/pointmaze.py:$$t --config.seeds=$(SEED) --config.algo=$(ALGO) \
	    --config.run_dir=$$dir $(ARGS); \
	done; \
	$(PY) -m pex_jax.report --runs $(PM_RUN) --out $(PM_RUN)/report

bench: $(STAMP) ## throughput benchmark -> bench_out/bench.json + bench.md (ARGS=--quick for a smoke run)
	$(PY) -m pex_jax.bench --out bench_out $(ARGS)

report: $(STAMP) ## tables + PNG learning curves from run dirs: RUNS='runs/...' OUT=reports
	$(PY) -m pex_jax.report --runs $(RUNS) --out $(or $(OUT),reports)

sweep: $(STAMP) ## create a W&B sweep (or print the commands offline): SWEEP=experiments/sweeps/<file>.yaml
	$(PY) experiments/sweep.py $(SWEEP)

study: $(STAMP) ## the PointMaze offline-to-online study (docs/results/pointmaze.md); resumable
	$(PY) experiments/study.py $(ARGS)

clean: ## remove the venv and caches (keeps runs/ and datasets)
	rm -rf $(VENV) .pytest_cache .ruff_cache
