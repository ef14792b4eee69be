"""The learners on CUDA (no vLLM): learner=torch and DeepSpeed ZeRO-2 on one rank keep the model, the reference
model and every micro-batch field (behav_logp included) on the GPU. Skipped without CUDA.
Run: make test-gpu (or scripts/gpu_check.sh, which runs tests/gpu without the vLLM tests)."""

from __future__ import annotations

import dataclasses
import importlib.util
import math

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def learner_config(model_dir, backend: str):
    """TrainConfig of the learner under test: KL to a reference model and TIS on, so every field is read."""
    from two_grpo.config.schema import TrainConfig

    cfg = TrainConfig(group_size=2, prompts_per_rollout=2, prompts_per_minibatch=2, lr=1e-4)
    cfg.model.path = str(model_dir)
    cfg.algo.kl_coef, cfg.algo.tis_cap = 0.05, 2.0
    cfg.learner.micro_rollouts = 2
    if backend == "zero2":
        cfg.learner.backend, cfg.learner.zero_stage = "deepspeed", 2
    return cfg


def batch_with_every_field(n: int = 4):
    from batches import random_batch

    b = random_batch(n, 2, lambda i: 3 + i)
    lp = -torch.rand_like(b.loss_mask)
    return dataclasses.replace(b, old_logp=lp, behav_logp=lp - 0.1)


@pytest.mark.parametrize("backend", ["torch", "zero2"])
def test_learner_trains_on_the_gpu_with_every_field(tiny_model_dir, backend):
    if backend == "zero2" and importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed not installed")
    from two_grpo.learner import make_learner
    from two_grpo.models.loading import load_model

    cfg = learner_config(tiny_model_dir, backend)
    model = load_model(str(tiny_model_dir), cfg.model)
    learner = make_learner(cfg, model)
    module = learner.model if backend == "torch" else learner.engine.module
    assert all(p.is_cuda for p in module.parameters())
    assert all(p.is_cuda for p in learner.ref_model.parameters())
    batch = batch_with_every_field()
    batch = batch.with_logprobs(old_logp=batch.old_logp, ref_logp=learner.ref_logprobs(batch))
    metrics = learner.train_minibatch(batch)
    assert math.isfinite(metrics["loss/policy"]) and metrics["optim/skipped"] == 0.0
    assert metrics["rollout/logprob_diff_max"] > 0  # behav_logp reached the GPU micro-batch
    assert "loss/tis_weight_mean" in metrics
