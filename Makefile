# evalkit: `make eval SUITE=...` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned: an unpinned torch pulls a multi-GB CUDA build on a CPU machine.
TORCH_SPEC ?= torch==2.13.0
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= $(MUJOCO_GL)

SUITE ?= libero
POLICY ?= zero
CKPT ?=
EPISODES ?=
WORKERS ?=
BATCH ?=
OUT ?=
VIDEO ?=
SEED ?=
TASKS ?=
RAY ?=
REPLICAS ?=
GPUS ?=
RUN ?=
BASE ?=
NEW ?=
RESULTS ?= results

EVAL_ARGS := --suite $(SUITE) --policy $(POLICY) \
	$(if $(CKPT),--checkpoint $(CKPT)) $(if $(EPISODES),--episodes-per-task $(EPISODES)) \
	$(if $(WORKERS),--workers $(WORKERS)) $(if $(BATCH),--batch-size $(BATCH)) $(if $(OUT),--out $(OUT)) \
	$(if $(VIDEO),--video $(VIDEO)) $(if $(SEED),--seed $(SEED)) $(if $(TASKS),--tasks $(TASKS)) \
	$(if $(RAY),--ray $(RAY)) $(if $(REPLICAS),--policy-replicas $(REPLICAS)) $(if $(GPUS),--gpus-per-replica $(GPUS))

.PHONY: setup eval test report leaderboard regress serve demo gpu-check clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e '.[dev,ray]'
	touch $@

eval: setup
	$(BIN)/evalkit eval $(EVAL_ARGS)

test: setup
	$(BIN)/ruff check evalkit tests bench
	$(BIN)/ruff format --check evalkit tests bench
	$(BIN)/python -m pytest -q -x --durations=15 $(PYTEST_ARGS)

report: setup
	$(BIN)/evalkit report $(RUN)

leaderboard: setup
	$(BIN)/evalkit leaderboard $(RESULTS)

regress: setup
	$(BIN)/evalkit regress --baseline $(BASE) --candidate $(NEW)

serve: setup
	$(BIN)/evalkit serve --policy $(POLICY) $(if $(CKPT),--checkpoint $(CKPT))

# The first taste: a scripted oracle on a few DROID-style scenes; no weights needed. Writes store, videos, report.
demo: setup
	$(BIN)/evalkit eval --suite droid_demo --policy oracle --video all --out $(RESULTS)/demo
	$(BIN)/evalkit report $(RESULTS)/demo

# Is this machine's GPU ready for pi05? Parity, latency, FLOP/s, memory, a LIBERO run through Ray (tiny on a CPU).
gpu-check: setup
	$(BIN)/python bench/gpu_check.py

clean-venv:
	rm -rf $(VENV)
