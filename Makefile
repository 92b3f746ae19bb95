# Experiment runner: `make train` and `make test` do all the set-up from a fresh clone.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= 2.13.0
# Extra pip arguments for torch, e.g. TORCH_INDEX="--index-url https://download.pytorch.org/whl/cu128"
TORCH_INDEX ?=
ARGS ?=
# the extras `make install` installs; test-ray uses its own venv (.venv-ray) with the ray extra as well
# (ray[default] is ~300 MB: `make test` runs it after the suite, `make test ARGS=...` does not)
EXTRAS ?= dev
OPTUNA_SWEEPER ?= 1.3.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.install.stamp

.DEFAULT_GOAL := help
.PHONY: help install train test test-fast test-ray pytest lint format tensorboard bench clean-outputs

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'
	@echo "  variables: TORCH=$(TORCH) (torch version), TORCH_INDEX (pip index for CUDA builds), ARGS (overrides)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "torch==$(TORCH)" $(TORCH_INDEX)
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	@# Hydra's Optuna sweeper without its optuna<3 pin (see the optuna extra in pyproject.toml)
	$(BIN)/pip install --quiet --no-deps "hydra-optuna-sweeper==$(OPTUNA_SWEEPER)"
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the project (torch==$(TORCH))

train: $(STAMP) ## train the default experiment (PPO on CartPole-v1); add overrides with ARGS="algo=dqn seed=1"
	$(BIN)/python -m rl_runner $(ARGS)

test: pytest ## run the whole test suite, convergence tests included, then the launcher tests with Ray (test-ray)
ifeq ($(strip $(ARGS)),)
	$(MAKE) test-ray
endif

test-fast: $(STAMP) ## run the fast tests only (skip the slow convergence tests)
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

test-ray: ## the launcher tests with Ray too, in a venv of their own (.venv-ray: dev and ray extras)
	$(MAKE) pytest VENV=.venv-ray EXTRAS=dev,ray ARGS="tests/runner_core/test_launchers.py"

pytest: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

lint: $(STAMP) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP) ## ruff format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

tensorboard: $(STAMP) ## serve outputs/ in TensorBoard
	$(BIN)/tensorboard --logdir outputs

bench: $(STAMP) ## run the benchmark suite, write docs/benchmarks.md (installs the bench extra)
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python benchmarks/run_all.py $(ARGS)

clean-outputs: ## delete outputs/ and multirun/ (all runs!)
	rm -rf outputs multirun
