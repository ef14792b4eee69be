"""Learners. `make_learner` picks one; DeepSpeed is imported only inside its own adapter."""

from __future__ import annotations

from typing import Any

from two_grpo.config.schema import TrainConfig


def make_learner(cfg: TrainConfig, model: Any, engine_shares_model: bool = True):
    """`engine_shares_model`: the rollout engine samples from `model` itself (ZeRO-3 then trains a copy)."""
    if cfg.learner.backend == "torch":
        from two_grpo.dist.context import init_dist
        from two_grpo.learner.torch_learner import TorchLearner

        device = init_dist().device  # this rank's GPU when CUDA is available
        return TorchLearner(model, cfg.learner, cfg.lr, cfg.algo, cfg.rollout.temperature, device, cfg.diagnostics)
    if cfg.learner.backend == "deepspeed":
        from two_grpo.learner.deepspeed_learner import DeepSpeedLearner

        return DeepSpeedLearner(model, cfg, engine_shares_model)
    raise ValueError(f"learner.backend={cfg.learner.backend!r} is not available in this build")
