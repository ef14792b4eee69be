#!/usr/bin/env bash
# The GPU check: `scripts/gpu_check.sh [--dry-run]` (README: GPU runs). One prepared script, no download, ends
# within 8 minutes: tests/gpu without the vLLM tests, then one paper-shaped training step (random
# Qwen2.5-Math-1.5B, bf16, HF engine) on learner=torch and on ZeRO-2 with one rank; prints step time, peak
# memory beside the memory plan, and MFU. Without CUDA it prints what it would run and exits 0.
# Needs in the Python it runs (PYTHON, else .venv/bin/python, else python3): torch, transformers, hydra-core,
# omegaconf, pytest, deepspeed (the ZeRO-2 step); bring them as wheels to a machine without a registry.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline
exec timeout 480 "$py" scripts/gpu_check.py "$@"
