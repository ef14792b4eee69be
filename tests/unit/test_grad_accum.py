"""Micro-batch invariance: 1x4 vs 4x1 vs 2x2 splits of one mini-batch give the same gradient.
Run: pytest tests/unit/test_grad_accum.py"""

import pytest
import torch
from batches import random_batch

from two_grpo.config.schema import AlgoConfig, LearnerConfig
from two_grpo.learner.torch_learner import TorchLearner


def make_batch(n=8, seed=0):
    return random_batch(n, per_group=2, response_len=lambda i: 1 + (i * 5) % 4, seed=seed)  # ragged rows


def grads_after(tiny_model_dir, micro, agg, old_shift=0.0):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    learner = TorchLearner(
        model,
        LearnerConfig(micro_rollouts=micro, grad_clip=0.0, warmup_steps=0),
        1e-3,
        AlgoConfig(loss_agg=agg),
        temperature=1.0,
    )
    batch = make_batch()
    if old_shift:
        batch = batch.with_logprobs(old_logp=learner.logprobs(batch) + old_shift * batch.loss_mask)
    learner.optimizer.step = lambda *a, **k: None  # keep the weights: compare gradients only
    metrics = learner.train_minibatch(batch)
    return {n: p.grad.clone() for n, p in model.named_parameters()}, metrics


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum"])
def test_micro_batch_split_does_not_change_the_gradient(tiny_model_dir, agg):
    ref, m_ref = grads_after(tiny_model_dir, micro=8, agg=agg, old_shift=0.05)
    for micro in (1, 2, 3):
        got, m = grads_after(tiny_model_dir, micro=micro, agg=agg, old_shift=0.05)
        for name in ref:
            assert torch.allclose(got[name], ref[name], atol=1e-6, rtol=1e-5), (micro, name)
        assert m["loss/policy"] == pytest.approx(m_ref["loss/policy"], abs=1e-6)


def test_an_update_moves_the_weights_toward_the_advantage(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from two_grpo.learner.step import forward_logprobs

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    learner = TorchLearner(model, LearnerConfig(warmup_steps=0), 1e-3, AlgoConfig(), temperature=1.0)
    batch = make_batch()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    lp0, _ = forward_logprobs(model, batch, 1.0)
    for _ in range(3):
        learner.train_minibatch(batch)
    lp1, _ = forward_logprobs(model, batch, 1.0)
    assert any(not torch.equal(before[n], p) for n, p in model.named_parameters())
    seq_gain = ((lp1 - lp0).detach() * batch.loss_mask).sum(1)  # [R]
    # rollouts with positive advantage gain log-probability relative to those with negative advantage
    assert seq_gain[batch.adv > 0].mean() > seq_gain[batch.adv < 0].mean()
