# two-grpo developer entry points. `make help` lists them.
PY     ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
ARGS   ?=
EXP    ?= paper_2grpo
SWEEP  ?= smoke
PYTEST := $(BIN)/python -m pytest
VLLM   ?= auto
TEST_WORKERS ?= 2

.DEFAULT_GOAL := help
.PHONY: help install train smoke test test-unit test-slow test-gpu lint format config tiny-model clean clean-runs sweep sweep-dry bench bench-rollout bench-ranks bench-memory

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml scripts/install_vllm.sh
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check "torch==2.13.0" -e ".[dev]"
	bash scripts/install_vllm.sh $(VENV) $(VLLM)
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install two-grpo (editable) with dev tools; CPU torch 2.13.0 first; vLLM per VLLM=auto|cpu|gpu|none

train: install ## run `two-grpo train` on the embedded default (add overrides with ARGS="group_size=2 lr=8e-6")
	$(BIN)/two-grpo train $(ARGS)

smoke: install ## a few-second end-to-end run (experiment=smoke)
	$(BIN)/two-grpo train experiment=smoke $(ARGS)

test: install ## every CPU test: unit, config and integration tiers, TEST_WORKERS pytest-xdist workers (1 thread each)
	$(BIN)/two-grpo build-model  # builtin:tiny once per machine, on every core, before the workers need it
	$(PYTEST) -q -m "not gpu" -n $(TEST_WORKERS) --dist loadscope --durations=15 $(ARGS)

test-unit: install ## the fast tier only (unit + config, seconds)
	$(PYTEST) -q $(ARGS)

test-slow: install ## the CPU integration tier only
	$(PYTEST) -q -m "slow" $(ARGS)

test-gpu: install ## GPU tests (skipped without CUDA)
	$(PYTEST) -q -m "gpu" $(ARGS)

bench-ranks: install ## step time and peak memory per rank: 1-rank torch vs 2-rank ZeRO-2/3 (ARGS="--steps 20")
	$(BIN)/python scripts/bench_multirank.py $(ARGS)

lint: install ## ruff check + format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## ruff format + autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

config: install ## print the composed config of EXP (default paper_2grpo)
	$(BIN)/two-grpo train experiment=$(EXP) --cfg job

sweep: install ## run a sweep preset and report it (SWEEP=smoke|study|paper|critique|table4|group_size|batch_lr, ARGS=overrides)
	$(BIN)/two-grpo sweep sweep=$(SWEEP) dir=sweeps/$(SWEEP) $(ARGS)
	$(BIN)/two-grpo report sweeps/$(SWEEP)

sweep-dry: install ## print a sweep preset's plan: members, overrides, projected steps/rollouts/tokens
	$(BIN)/two-grpo sweep sweep=$(SWEEP) dry_run=true $(ARGS)

tiny-model: install ## build the embedded default model (builtin:tiny) into the cache now
	$(BIN)/two-grpo build-model

bench: install ## ours (and compiled) vs TRL GRPOTrainer vs the limit and the hardware, samplers, opts, scaling, 2 vs 16, sweep members -> runs/bench/
	@$(BIN)/python -c "import trl, matplotlib" 2>/dev/null || \
		$(BIN)/pip install -q --disable-pip-version-check "torch==2.13.0" -e ".[dev,bench]"
	WANDB_MODE=disabled HF_HUB_OFFLINE=1 $(BIN)/python scripts/bench.py $(ARGS)

bench-rollout: install ## tokens/s of in-loop vLLM, standalone vLLM and HF generate on the same prompts (ARGS for options)
	$(BIN)/python scripts/bench_rollout.py $(ARGS)

bench-memory: install ## peak RSS of one learner step at 151,936 vocab: full logits vs chunked (ARGS="--quick")
	$(BIN)/python scripts/bench_memory.py $(ARGS)

clean-runs: ## delete runs/
	rm -rf runs

clean: ## delete caches and build outputs (keeps .venv)
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
