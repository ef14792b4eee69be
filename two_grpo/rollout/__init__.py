"""Rollout engines. `make_engine` picks one; vLLM is imported only inside its own adapter."""

from __future__ import annotations

from typing import Any

from two_grpo.config import TrainConfig
from two_grpo.rollout.base import RolloutEngine, Sampling

__all__ = ["RolloutEngine", "Sampling", "make_engine"]


def make_engine(cfg: TrainConfig, model: Any, tokenizer: Any) -> RolloutEngine:
    if cfg.rollout.backend == "hf":
        from two_grpo.rollout.hf_engine import HFEngine

        return HFEngine(model, tokenizer, cfg.rollout.max_prompt_tokens, cfg.rollout.gen_rollouts_per_call)
    raise ValueError(f"rollout.backend={cfg.rollout.backend!r} is not available in this build; use rollout=hf")
