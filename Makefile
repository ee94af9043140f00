# pex-jax: every Python target runs inside .venv, which this Makefile creates and
# refreshes whenever requirements.txt or setup.cfg change.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# ACCEL: which jax wheels the venv gets, always at requirements.txt's jax pin: cpu (requirements.txt as is),
# cuda12 / cuda13 (jax[cudaNN]: the CUDA plugin and NVIDIA's libraries from PyPI), tpu (jax[tpu]: libtpu),
# auto (cuda13 or cuda12 from the driver's CUDA version in nvidia-smi; cpu where nvidia-smi is missing or
# fails; a stop naming ACCEL where it runs but shows no CUDA version >= 12). The venv records its value in
# .venv/.accel: later `make` calls without ACCEL keep it, a different ACCEL reinstalls (and removes the
# other accelerators' plugins). A new venv is auto, so a GPU machine gets the CUDA wheels and CI (no
# nvidia-smi) stays cpu. An existing CPU venv stays cpu; on a GPU machine the run targets say so first.
ACCELS := cpu cuda12 cuda13 tpu
# "<accel> <CUDA version>" as nvidia-smi shows it: cpu (no nvidia-smi, or it fails: no GPU to use),
# cuda13 / cuda12 by the driver's CUDA version, none (a GPU but no CUDA version >= 12 in its output).
ACCEL_SMI = $(shell out=$$(nvidia-smi 2>/dev/null) || { echo cpu -; exit 0; }; \
  v=$$(echo "$$out" | sed -n 's/.*CUDA Version: *\([0-9][0-9.]*\).*/\1/p' | head -1); m=$${v%%.*}; \
  if [ -z "$$m" ]; then echo none ?; elif [ "$$m" -ge 13 ]; then echo cuda13 $$v; \
  elif [ "$$m" -ge 12 ]; then echo cuda12 $$v; else echo none $$v; fi)
ACCEL_RECORDED := $(shell cat $(VENV)/.accel 2>/dev/null)
ACCEL_BUILT := $(or $(ACCEL_RECORDED),cpu)
ACCEL_NEW := $(if $(ACCEL_RECORDED)$(wildcard $(STAMP)),,1)
ifeq ($(origin ACCEL),undefined)
ACCEL := $(if $(ACCEL_NEW),auto,$(ACCEL_BUILT))
endif
ifeq ($(ACCEL),auto)
ACCEL_FOUND := $(ACCEL_SMI)
override ACCEL := $(word 1,$(ACCEL_FOUND))
endif
ACCEL_UNDECIDED := $(filter none,$(word 1,$(ACCEL_FOUND)))
ifeq ($(filter $(ACCEL),$(ACCELS) $(ACCEL_UNDECIDED)),)
$(error ACCEL=$(ACCEL) is not one of: $(ACCELS) auto)
endif
JAX_VERSION := $(shell sed -n 's/^jax==\([^ ;#]*\).*/\1/p' requirements.txt)
ACCEL_REQ := $(if $(filter cpu,$(ACCEL)),,jax[$(ACCEL)]==$(JAX_VERSION))
ACCEL_PLUGINS := jax-cuda12-plugin jax-cuda12-pjrt jax-cuda13-plugin jax-cuda13-pjrt libtpu
ACCEL_STALE := $(filter-out $(if $(filter cuda%,$(ACCEL)),jax-$(ACCEL)-%)$(if $(filter tpu,$(ACCEL)),libtpu),$(ACCEL_PLUGINS))
# SYSTEM_JAX=1: no venv; the system python3 with the jax it already has (an accelerator image without
# registry access), plus the wheels carried in $(WHEELS) (`make gpu-wheels`) installed into $(SITE).
# Default: 1 when there is no built venv, $(WHEELS) holds wheels and python3 imports jax; else 0.
WHEELS ?= .whl
SITE ?= /tmp/pex-jax-site
ifeq ($(origin SYSTEM_JAX),undefined)
SYSTEM_JAX := $(if $(wildcard $(STAMP)),0,$(if $(wildcard $(WHEELS)/*.whl),$(shell $(PYTHON) -c 'import jax' >/dev/null 2>&1 && echo 1 || echo 0),0))
endif
export SYSTEM_JAX
ifeq ($(SYSTEM_JAX),1)
PY := $(PYTHON)
STAMP := $(SITE)/.installed
export PYTHONPATH := $(SITE):$(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH))
endif
# auto that can't pick CUDA wheels stops every target that builds or uses the venv (help and clean still run).
ifeq ($(ACCEL_UNDECIDED)|$(SYSTEM_JAX),none|0)
ifneq ($(filter-out help clean,$(or $(MAKECMDGOALS),help)),)
$(error ACCEL: nvidia-smi shows a GPU but no CUDA version >= 12 (found: $(word 2,$(ACCEL_FOUND))); pick jax's wheels with ACCEL=cuda13, ACCEL=cuda12 or ACCEL=cpu)
endif
endif
# An existing CPU venv on a GPU machine: one line before a run, unless ACCEL=cpu was asked for.
ACCEL_RUN_GOALS := demo antmaze locomotion pointmaze study study-antmaze study-locomotion bench bench-reference ant-expert \
  mujoco-experts gpu-check
ifeq ($(origin ACCEL)|$(ACCEL)|$(ACCEL_NEW)|$(SYSTEM_JAX)|$(MAKELEVEL),file|cpu||0|0)
ifneq ($(filter $(ACCEL_RUN_GOALS),$(MAKECMDGOALS)),)
ifneq ($(word 1,$(ACCEL_SMI)),cpu)
$(info note: $(VENV) is CPU-only (ACCEL=cpu) but nvidia-smi shows a GPU, so this runs on the CPU; `make $(firstword $(filter $(ACCEL_RUN_GOALS),$(MAKECMDGOALS))) ACCEL=auto` switches it to jax's CUDA wheels)
endif
endif
endif

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
TEST_PLATFORMS ?= cpu
TEST_WORKERS ?= auto
HOPPER_STEPS ?= 300000
HALFCHEETAH_STEPS ?= 500000

.DEFAULT_GOAL := help
.PHONY: help test lint data data-antmaze ant-expert mujoco-experts mujoco-fidelity data-mujoco demo antmaze locomotion pointmaze bench report results dashboard sweep study study-antmaze study-locomotion clean

ANTMAZE_TASKS := umaze umaze-diverse medium-play medium-diverse large-play large-diverse
POINTMAZE_TASKS := umaze medium large
# the paper's locomotion rows as read from its Table 1 (experiments/configs/locomotion.py: PAPER_TASKS)
LOCOMOTION_TASKS := halfcheetah-random halfcheetah-medium halfcheetah-medium-replay hopper-random hopper-medium \
  hopper-medium-replay walker2d-random walker2d-medium walker2d-medium-replay
TRAIN := $(PY) -m pex_jax.train
NOW := $(shell date +%Y%m%d-%H%M%S)
AM_RUN = $(or $(RUN),runs/antmaze/$(NOW))
PM_RUN = $(or $(RUN),runs/pointmaze/$(NOW))
LOCO_RUN = $(or $(RUN),runs/locomotion/$(NOW))

help: ## show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'
	@echo "  variables: SEED=0-9|0,3,7|4  ALGO=pex|direct|buffer|scratch|offline|pex_sac|sac  TASK=<task>  SOURCE=d4rl|minari|local  RUN=<dir>  MULTITASK=1|0 (1: all tasks in one pre-training and one online process; 0: one process per task)  RUNS=<dirs>  SWEEP=<yaml>  ARGS='--config.x=y'"
	@echo "  ACCEL=cpu|cuda12|cuda13|tpu|auto (jax wheels of .venv, now $(if $(ACCEL_NEW),no venv,$(ACCEL_BUILT)); a new venv is auto: CUDA where nvidia-smi works, else cpu)  SYSTEM_JAX=0|1 (python3's own jax + $(WHEELS)/)  TEST_PLATFORMS=cpu|'' (make test's JAX_PLATFORMS)  TEST_WORKERS=auto|N|0 (make test's processes, pytest-xdist)"

ifeq ($(SYSTEM_JAX),1)
$(STAMP): $(wildcard $(WHEELS)/*.whl)
	mkdir -p $(SITE)
	$(if $(wildcard $(WHEELS)/*.whl),$(PY) -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target $(SITE) $(WHEELS)/*.whl)
	touch $(STAMP)
else
$(STAMP): requirements.txt setup.cfg pyproject.toml $(if $(filter-out $(ACCEL_BUILT),$(ACCEL)),accel-changed)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "pex-jax needs Python >= 3.11 (found " + sys.version.split()[0] + "); set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	rm -f $(STAMP) && echo $(ACCEL) > $(VENV)/.accel
	$(PY) -m pip install -q --upgrade pip
	@stale=$$($(PY) -m pip list --format=freeze 2>/dev/null | sed 's/==.*//' | tr 'A-Z_' 'a-z-' | grep -xF $(addprefix -e ,$(ACCEL_STALE)) || true); \
	  if [ -n "$$stale" ]; then echo "ACCEL=$(ACCEL): removing" $$stale; $(PY) -m pip uninstall -q -y $$stale; fi
	$(PY) -m pip install -q -r requirements.txt $(if $(ACCEL_REQ),"$(ACCEL_REQ)")
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)
endif

.PHONY: accel-changed
accel-changed:
	@echo "ACCEL=$(ACCEL) ($(if $(ACCEL_NEW),new venv,was $(ACCEL_BUILT))$(if $(ACCEL_FOUND),; auto: nvidia-smi shows CUDA $(word 2,$(ACCEL_FOUND)))$(if $(ACCEL_NEW),; ACCEL=cpu for CPU-only jax)): installing jax$(if $(ACCEL_REQ),[$(ACCEL)])==$(JAX_VERSION) into $(VENV)"

test: $(STAMP) ## run the test suite (CPU, tiny datasets, WANDB disabled; TEST_WORKERS processes)
	WANDB_MODE=$${WANDB_MODE:-disabled} JAX_PLATFORMS=$${JAX_PLATFORMS:-$(TEST_PLATFORMS)} $(PY) -m pytest \
	  $$($(PY) -c 'import xdist' 2>/dev/null && echo "-n $(TEST_WORKERS) --dist worksteal") $(ARGS)

lint: $(STAMP) ## ruff check
	$(VENV)/bin/ruff check pex_jax experiments tests

data: $(STAMP) ## generate the local PointMaze datasets (umaze, medium, large) into MINARI_DATASETS_PATH
	$(PY) -m pex_jax.datagen.pointmaze --maze=all $(ARGS)

data-antmaze: $(STAMP) ## generate the six local AntMaze datasets pex/antmaze/<task>-v0 (ARGS='--task=umaze --steps=N --noise=0.2 --seed=0')
	$(PY) -m pex_jax.datagen.antmaze --task=all --skip-existing $(ARGS)

ant-expert: $(STAMP) ## train the goal-reaching ant controller for AntMaze data (SAC, ~40 min on 2 CPU cores)
	$(PY) -m pex_jax.datagen.ant_controller train --steps=400000 --seed=0 $(ARGS)

mujoco-experts: $(STAMP) ## SAC on Hopper (HOPPER_STEPS=300000, ~50 min) then HalfCheetah (HALFCHEETAH_STEPS=500000): policy files + medium-replay data
	$(PY) -m pex_jax.datagen.locomotion train --env=hopper --steps=$(HOPPER_STEPS) --seed=0 $(ARGS)
	$(PY) -m pex_jax.datagen.locomotion train --env=halfcheetah --steps=$(HALFCHEETAH_STEPS) --seed=0 $(ARGS)

data-mujoco: $(STAMP) ## generate the six local locomotion datasets pex/mujoco/{hopper,halfcheetah}/{medium,medium-replay,expert}-v0
	$(PY) -m pex_jax.datagen.locomotion generate --env=all --level=all --skip-existing $(ARGS)

demo: $(STAMP) ## offline -> online (offline, direct, pex) on a small local PointMaze dataset in minutes
	WANDB_MODE=$${WANDB_MODE:-disabled} $(PY) experiments/demo.py $(ARGS)

antmaze: $(STAMP) ## AntMaze: SEED=0-9 ALGO=pex TASK=<task[,task]> SOURCE=d4rl|minari|local RUN=<dir> ARGS=...
	@set -e; case "$(SOURCE)" in d4rl) sfx=-d4rl;; minari) sfx=;; local) sfx=-local;; \
	  *) echo "error: SOURCE=$(SOURCE) is not a data source; use SOURCE=d4rl (original D4RL files, the default), SOURCE=minari (Minari D4RL/antmaze/*-v1) or SOURCE=local (generated here)" >&2; exit 2;; esac; \
	tasks=""; for t in $$(echo '$(or $(TASK),$(ANTMAZE_TASKS))' | tr , ' '); do \
	  case "$$t" in *-d4rl|*-local) tasks="$$tasks $$t";; *) tasks="$$tasks $$t$$sfx";; esac; done; \
	local=$$(for t in $$tasks; do case "$$t" in *-local) printf '%s,' "$${t%-local}";; esac; done); \
	if [ -n "$$local" ]; then echo "== antmaze local datasets: generating what is missing ($${local%,})"; \
	  $(PY) -m pex_jax.datagen.antmaze --task="$${local%,}" --skip-existing; fi; \
	all=$$(echo $$tasks | tr ' ' ,); \
	if [ "$(MULTITASK)" = 1 ]; then \
	  case "$(ALGO)" in buffer|scratch|sac) ;; *) \
	    echo "== antmaze offline pre-training, all tasks x seeds $(SEED) per device call -> $(AM_RUN)"; \
	    $(PY) -m pex_jax.pretrain --config=experiments/configs/antmaze.py --tasks="$$all" \
	      --config.seeds=$(SEED) --config.algo=$(ALGO) --config.run_dir=$(AM_RUN) $(ARGS);; esac; \
	  if [ "$(ALGO)" != offline ]; then \
	    echo "== antmaze online $(ALGO), all tasks x seeds $(SEED) in one process -> $(AM_RUN)/<task>/$(ALGO)"; \
	    $(PY) -m pex_jax.finetune --config=experiments/configs/antmaze.py --tasks="$$all" \
	      --config.seeds=$(SEED) --config.algo=$(ALGO) --config.run_dir=$(AM_RUN) $(ARGS); fi; \
	else for t in $$tasks; do \
	  dir=$(AM_RUN)/antmaze-$$t/$(ALGO); \
	  if [ -f $$dir/summary.json ] && ! grep -qE '"status": "(failed|preempted|diverged)"' $$dir/summary.json; then \
	    echo "== antmaze $$t / $(ALGO): done ($$dir)"; continue; fi; \
	  echo "== antmaze $$t / $(ALGO) / seeds $(SEED) -> $$dir"; \
	  $(TRAIN) --config=experiments/configs/antmaze.py:$$t --config.seeds=$(SEED) --config.algo=$(ALGO) \
	    --config.run_dir=$$dir $(ARGS); \
	done; fi; \
	$(PY) -m pex_jax.tools.report --runs $(AM_RUN) --out $(AM_RUN)/report

locomotion: $(STAMP) ## MuJoCo locomotion: SEED=0-9 ALGO=pex TASK=<env-level[,...]> SOURCE=d4rl|minari|local RUN=<dir> ARGS=...
	@set -e; case "$(SOURCE)" in d4rl) sfx=-d4rl;; minari) sfx=;; local) sfx=-local;; \
	  *) echo "error: SOURCE=$(SOURCE) is not a data source; use SOURCE=d4rl (D4RL's -v2 files, the default), SOURCE=minari (Minari mujoco/*-v0) or SOURCE=local (generated here)" >&2; exit 2;; esac; \
	tasks=""; for t in $$(echo '$(or $(TASK),$(LOCOMOTION_TASKS))' | tr , ' '); do \
	  case "$$t" in *-d4rl|*-local) tasks="$$tasks $$t";; *) tasks="$$tasks $$t$$sfx";; esac; done; \
	for t in $$tasks; do case "$$t" in *-local) e=$${t%%-*}; l=$${t#*-}; l=$${l%-local}; \
	  echo "== locomotion local dataset $$e/$$l: generating it if missing"; \
	  $(PY) -m pex_jax.datagen.locomotion generate --env=$$e --level=$$l --skip-existing;; esac; done; \
	all=$$(echo $$tasks | tr ' ' ,); \
	case "$(ALGO)" in buffer|scratch|sac) ;; *) \
	  echo "== locomotion offline pre-training, tasks x seeds $(SEED) per device call (same-shape groups) -> $(LOCO_RUN)"; \
	  $(PY) -m pex_jax.pretrain --config=experiments/configs/locomotion.py --tasks="$$all" \
	    --config.seeds=$(SEED) --config.algo=$(ALGO) --config.run_dir=$(LOCO_RUN) $(ARGS);; esac; \
	if [ "$(ALGO)" != offline ]; then \
	  echo "== locomotion online $(ALGO), tasks x seeds $(SEED) in one process -> $(LOCO_RUN)/<task>/$(ALGO)"; \
	  $(PY) -m pex_jax.finetune --config=experiments/configs/locomotion.py --tasks="$$all" \
	    --config.seeds=$(SEED) --config.algo=$(ALGO) --config.run_dir=$(LOCO_RUN) $(ARGS); fi; \
	$(PY) -m pex_jax.tools.report --runs $(LOCO_RUN) --out $(LOCO_RUN)/report

MJ2_VENV ?= .venv-mj2
FIDELITY_WORK ?= /tmp/pex-jax-mujoco-fidelity
mujoco-fidelity: $(STAMP) ## MuJoCo 2.x (D4RL's era) vs 4 on the same states and actions -> docs/results/mujoco_fidelity.md (needs python3.10 and PyPI)
	@set -e; test -x $(MJ2_VENV)/bin/python || { $(or $(PYTHON310),python3.10) -m venv $(MJ2_VENV) && \
	  $(MJ2_VENV)/bin/pip install -q "mujoco==2.2.0" "numpy<2"; }; \
	mkdir -p $(FIDELITY_WORK); \
	$(PY) -m pip download -q --no-deps --no-binary=:all: gym==0.23.1 -d $(FIDELITY_WORK); \
	tar -xzf $(FIDELITY_WORK)/gym-0.23.1.tar.gz -C $(FIDELITY_WORK); \
	gx=$(FIDELITY_WORK)/gym-0.23.1/gym/envs/mujoco/assets; \
	nx=$$($(PY) -c 'import gymnasium, os; print(os.path.join(os.path.dirname(gymnasium.__file__), "envs/mujoco/assets"))'); \
	for e in hopper halfcheetah walker2d; do w=$(FIDELITY_WORK)/$$e; \
	  $(PY) experiments/mujoco_fidelity.py states --env=$$e --count=300 --out=$$w-states.npz; \
	  $(MJ2_VENV)/bin/python experiments/mujoco_fidelity.py step --env=$$e --xml-dir=$$gx --states=$$w-states.npz --out=$$w-mj2.npz; \
	  $(MJ2_VENV)/bin/python experiments/mujoco_fidelity.py step --env=$$e --xml-dir=$$nx --states=$$w-states.npz --out=$$w-mj2-gymnasium.npz; \
	  $(PY) experiments/mujoco_fidelity.py step --env=$$e --xml-dir=$$nx --states=$$w-states.npz --out=$$w-mj4.npz; \
	  $(PY) experiments/mujoco_fidelity.py step --env=$$e --xml-dir=$$nx --states=$$w-states.npz --out=$$w-mj4-1e-9.npz --perturb=1e-9; \
	done; \
	w=$(FIDELITY_WORK)/antmaze; \
	$(PY) experiments/mujoco_fidelity.py states --env=antmaze --count=300 --out=$$w-states.npz --xml-out=$$w-xml; \
	$(MJ2_VENV)/bin/python experiments/mujoco_fidelity.py step --env=antmaze --xml-dir=$$w-xml/mj2 --states=$$w-states.npz --out=$$w-mj2.npz; \
	$(PY) experiments/mujoco_fidelity.py step --env=antmaze --xml-dir=$$w-xml/mj4 --states=$$w-states.npz --out=$$w-mj4.npz; \
	$(PY) experiments/mujoco_fidelity.py step --env=antmaze --xml-dir=$$w-xml/mj4 --states=$$w-states.npz --out=$$w-mj4-1e-9.npz --perturb=1e-9; \
	$(PY) experiments/mujoco_fidelity.py compare --envs=hopper,halfcheetah,walker2d,antmaze --work=$(FIDELITY_WORK) --out=docs/results/mujoco_fidelity.md

pointmaze: $(STAMP) ## PointMaze on the local datasets (generated if missing): SEED=0-2 ALGO=pex TASK=<task[,task]> RUN=<dir>
	@set -e; for t in $$(echo '$(or $(TASK),$(POINTMAZE_TASKS))' | tr , ' '); do \
	  $(PY) -m pex_jax.datagen.pointmaze --maze=$${t%%-*} --skip-existing --no-progress; \
	  dir=$(PM_RUN)/pointmaze-$$t/$(ALGO); \
	  if [ -f $$dir/summary.json ] && ! grep -qE '"status": "(failed|preempted|diverged)"' $$dir/summary.json; then \
	    echo "== pointmaze $$t / $(ALGO): done ($$dir)"; continue; fi; \
	  echo "== pointmaze $$t / $(ALGO) / seeds $(SEED) -> $$dir"; \
	  $(TRAIN) --config=experiments/configs/pointmaze.py:$$t --config.seeds=$(SEED) --config.algo=$(ALGO) \
	    --config.run_dir=$$dir $(ARGS); \
	done; \
	$(PY) -m pex_jax.tools.report --runs $(PM_RUN) --out $(PM_RUN)/report

# The reference PyTorch PEX side by side (make bench-reference, or make bench REF=1): its code at REF_COMMIT from
# REF_SRC (a clone, bare git dir or source tree; default: git clone REF_URL) into REF_DIR, and $(TORCH) with numpy
# in a venv of its own, REF_VENV (the project's venv never gets torch). Both are git-ignored and reused.
REF ?= 0
REF_SRC ?=
REF_COMMIT ?= b0ae11e
REF_URL ?= https://github.com/Haichao-Zhang/PEX.git
REF_DIR ?= .ref/PEX-$(REF_COMMIT)
REF_VENV ?= .venv-ref
TORCH ?= torch==2.13.0

bench: $(STAMP) ## throughput: offline, the online engine (workers off vs on), its parts, the suite's projected hours -> bench_out/bench.json + bench.md (ARGS=--quick: smoke run; REF=1: + reference)
ifeq ($(REF),1)
	@$(MAKE) --no-print-directory bench-reference
else
	$(PY) -m pex_jax.tools.bench --out bench_out $(ARGS)
endif

.PHONY: bench-reference
bench-reference: $(STAMP) ## make bench + the reference PyTorch PEX side by side (no network: REF_SRC=<PEX clone or tree>)
	$(PY) -m pex_jax.tools.ref_pex fetch --dest $(REF_DIR) --commit $(REF_COMMIT) --url $(REF_URL) $(if $(REF_SRC),--src "$(REF_SRC)")
	@$(MAKE) --no-print-directory $(REF_VENV)/.installed
	$(PY) -m pex_jax.tools.bench --out bench_out --reference $(REF_VENV)/bin/python --reference-dir $(REF_DIR) \
	  --reference-commit $(REF_COMMIT) $(if $(REF_SRC),--reference-src "$(REF_SRC)") $(ARGS)

$(REF_VENV)/.installed:
	test -x $(REF_VENV)/bin/python || $(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/python -m pip install -q "$(TORCH)" numpy
	touch $@

dashboard: $(STAMP) ## the W&B comparison report + workspace as code: ENTITY=.. PROJECT=.. [SOURCE=d4rl|minari|local] [TASKS=a,b]; no API key: writes reports/dashboard.json
	$(PY) -m pex_jax.tools.dashboard --entity "$(ENTITY)" --project "$(PROJECT)" $(if $(SOURCE),--source=$(SOURCE)) $(if $(TASKS),--tasks=$(TASKS))

report: $(STAMP) ## tables + PNG learning curves from run dirs: RUNS='runs/...' OUT=reports
	$(PY) -m pex_jax.tools.report --runs $(RUNS) --out $(or $(OUT),reports)

results: $(STAMP) ## every table (and figure) in docs/results again from the committed run dirs; ARGS=--check compares instead
	$(PY) experiments/results.py $(ARGS)

sweep: $(STAMP) ## create a W&B sweep (or print the commands offline): SWEEP=experiments/sweeps/<file>.yaml
	$(PY) experiments/sweep.py $(SWEEP)

study: $(STAMP) ## the PointMaze offline-to-online study (docs/results/pointmaze.md); resumable
	$(PY) experiments/study.py $(ARGS)

study-antmaze: $(STAMP) ## the AntMaze study (docs/results/antmaze.md) on local data; resumable; ARGS='--tasks=umaze --seeds=0-2'
	$(PY) experiments/study_antmaze.py $(ARGS)

study-locomotion: $(STAMP) ## the locomotion study (docs/results/locomotion.md) on local data; resumable; ARGS='--tasks=hopper-medium'
	$(PY) experiments/study_locomotion.py $(ARGS)

clean: ## remove the venv and caches (keeps runs/ and datasets)
	rm -rf $(VENV) .pytest_cache .ruff_cache

.PHONY: gpu-check gpu-wheels
gpu-check: $(STAMP) ## accelerator acceptance (<10 min): device, accel tests, bench 1 vs 10 seeds, multi-task pre-training -> OUT
	$(PY) experiments/gpu_check.py --out $(or $(OUT),bench_out/gpu_check)

gpu-wheels: $(STAMP) ## download into .whl/ (WHEELS) the wheels gpu-check needs on a CUDA image without registry access
	$(PY) experiments/gpu_check.py --download-wheels $(WHEELS)
