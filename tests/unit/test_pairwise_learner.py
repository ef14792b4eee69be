"""algo.loss=pairwise and diagnostics.grad_noise in the torch learner: pytest tests/unit/test_pairwise_learner.py"""

from __future__ import annotations

import pytest
import torch
from batches import random_batch

from two_grpo.algo.advantages import compute_advantages
from two_grpo.config.schema import AlgoConfig, DiagnosticsConfig, LearnerConfig
from two_grpo.learner.micro import micro_batches
from two_grpo.learner.torch_learner import TorchLearner


def pair_batch(n=12, seed=0):
    """G=2 pairs with binary rewards (sign advantages +-1 / 0), ragged responses."""
    batch = random_batch(n, per_group=2, response_len=lambda i: 1 + (i * 5) % 4, seed=seed)
    rewards = torch.tensor([float((i * 7 + seed) % 3 == 0) for i in range(n)])
    adv, _ = compute_advantages(rewards, batch.group_ids, "sign")
    batch.adv = adv
    return batch


def grads(tiny_model_dir, algo, micro=4, noise=None, batch=None):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    learner = TorchLearner(model, LearnerConfig(micro_rollouts=micro, grad_clip=0.0, warmup_steps=0), 1e-3, algo,
                           temperature=1.0, noise=noise)  # fmt: skip
    learner.optimizer.step = lambda *a, **k: None  # compare gradients only
    metrics = learner.train_minibatch(batch if batch is not None else pair_batch())
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, metrics


def test_pairwise_learner_equals_grpo_on_policy(tiny_model_dir):
    """The whole path (micro-batches of whole pairs, the loss, accumulation) gives GRPO's gradient at G=2."""
    ref, _ = grads(tiny_model_dir, AlgoConfig(advantage="sign", clip=False, loss_agg="seq_mean_token_mean"), micro=12)
    for micro in (2, 4):
        got, m = grads(tiny_model_dir, AlgoConfig(loss="pairwise", pairwise_beta=0.5), micro=micro)
        for name in ref:
            assert torch.allclose(got[name], ref[name], atol=1e-6, rtol=1e-5), (micro, name)
    assert m["loss/pairs_signal"] + m["loss/pairs_tied"] == 6
    assert m["loss/pair_margin_mean"] == pytest.approx(0.0, abs=1e-6)  # on-policy


def test_micro_batches_keep_groups_whole():
    batch = random_batch(12, per_group=2, response_len=lambda i: 1 + (i * 7) % 5, seed=1)
    batch.group_ids = batch.group_ids[torch.randperm(12, generator=torch.Generator().manual_seed(0))]  # scattered
    for by_length in (False, True):
        chunks = micro_batches(batch, 4, by_length, whole_groups=True)
        seen = torch.cat([idx for idx, _ in chunks])
        assert sorted(seen.tolist()) == list(range(12))
        for _, sub in chunks:
            for g in sub.group_ids.unique():
                assert int((sub.group_ids == g).sum()) == 2  # both rows of the pair


def test_grad_noise_off_or_one_set_is_bitwise_unchanged_and_sets_sum_to_the_gradient(tiny_model_dir):
    algo = AlgoConfig()
    batch = random_batch(16, per_group=4, response_len=lambda i: 1 + (i * 5) % 4, seed=2)
    off, m_off = grads(tiny_model_dir, algo, batch=batch)
    one, m_one = grads(tiny_model_dir, algo, noise=DiagnosticsConfig(grad_noise=True, grad_noise_sets=1), batch=batch)
    assert all(torch.equal(off[n], one[n]) for n in off) and m_off == m_one
    two, m_two = grads(tiny_model_dir, algo, noise=DiagnosticsConfig(grad_noise=True, grad_noise_sets=2), batch=batch)
    for n in off:  # the same gradient, summed in another order
        assert torch.allclose(two[n], off[n], atol=1e-6, rtol=1e-5), n
    assert m_two["grad_noise/sets"] == 2
    assert m_two["grad_noise/trace_cov"] > 0 and -1 <= m_two["grad_noise/set_cos_mean"] <= 1
    assert "grad_noise/b_simple" in m_two and "grad_noise/snr" in m_two
    assert not any(k.startswith("grad_noise/") for k in m_off)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["algo.loss=pairwise"], "set group_size=2"),
        (["algo.loss=pairwise", "group_size=2", "learner.micro_rollouts=3"], "must be even with algo.loss=pairwise"),
        (["algo.loss=pairwise", "group_size=2", "algo.pairwise_beta=0"], "algo.pairwise_beta=0.0 must be > 0"),
        (["diagnostics.grad_noise=true", "learner=zero2"], "measured by learner=torch only"),
        (["diagnostics.grad_noise=true", "diagnostics.grad_noise_sets=64"], "each set needs at least one whole group"),
    ],
)
def test_config_refusals(compose, overrides, message):
    from two_grpo.config.schema import ConfigError

    with pytest.raises(ConfigError, match=message):
        compose(overrides)
