"""Learners. `make_learner` picks one; DeepSpeed is imported only inside its own adapter."""

from __future__ import annotations

from typing import Any

from two_grpo.config import TrainConfig


def make_learner(cfg: TrainConfig, model: Any):
    if cfg.learner.backend == "torch":
        from two_grpo.learner.torch_learner import TorchLearner

        return TorchLearner(model, cfg.learner, cfg.lr, cfg.algo, cfg.rollout.temperature)
    raise ValueError(f"learner.backend={cfg.learner.backend!r} is not available in this build")
