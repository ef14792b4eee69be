"""diagnostics.grad_noise_ref_every: the reference gradient's cosine, its schedule and its validation:
pytest tests/unit/test_grad_noise_ref.py"""

from __future__ import annotations

import pytest
import torch
from batches import random_batch

from two_grpo.config.schema import AlgoConfig, ConfigError, DiagnosticsConfig, LearnerConfig
from two_grpo.learner.torch_learner import TorchLearner
from two_grpo.run.noise_reference import due, reference_prompts


def learner_of(tiny_model_dir, sets=2):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    noise = DiagnosticsConfig(grad_noise=True, grad_noise_sets=sets)
    cfg = LearnerConfig(micro_rollouts=4, grad_clip=0.0, warmup_steps=0)
    return TorchLearner(model, cfg, 1e-3, AlgoConfig(), temperature=1.0, noise=noise)


def batch_of(seed):
    return random_batch(16, per_group=4, response_len=lambda i: 1 + (i * 5) % 4, seed=seed)


def test_the_same_batch_as_reference_gives_cosine_one_and_leaves_weights_alone(tiny_model_dir):
    learner = learner_of(tiny_model_dir)
    before = {n: p.detach().clone() for n, p in learner.model.named_parameters()}
    batch = batch_of(2)
    learner.noise_reference(batch)
    assert all(torch.equal(p, before[n]) for n, p in learner.model.named_parameters())  # no step taken
    assert all(p.grad is None for p in learner.params) and not learner.optimizer.state  # cleared, no Adam state
    m = learner.train_minibatch(batch)
    assert m["grad_noise/ref_cos"] == pytest.approx(1.0, abs=1e-9)
    assert "grad_noise/ref_cos" not in learner.train_minibatch(batch)  # one reference serves one step


def test_another_batch_as_reference_is_not_parallel(tiny_model_dir):
    learner = learner_of(tiny_model_dir)
    learner.noise_reference(batch_of(3))
    cos = learner.train_minibatch(batch_of(2))["grad_noise/ref_cos"]
    assert -1.0 < cos < 0.99  # random advantages on other tokens: a different direction


def test_reference_does_not_change_the_step(tiny_model_dir):
    """The step after a reference applies bitwise the same update as one without it."""
    plain, with_ref = learner_of(tiny_model_dir), learner_of(tiny_model_dir)
    with_ref.noise_reference(batch_of(3))
    m_plain, m_ref = plain.train_minibatch(batch_of(2)), with_ref.train_minibatch(batch_of(2))
    for (_, a), (_, b) in zip(plain.model.named_parameters(), with_ref.model.named_parameters()):
        assert torch.equal(a, b)
    m_ref.pop("grad_noise/ref_cos")
    assert m_plain == m_ref


@pytest.mark.parametrize(
    "steps_before, updates, every, expected",
    [(0, 1, 5, True), (4, 1, 5, False), (5, 1, 5, True), (6, 1, 5, False), (3, 2, 4, True), (1, 2, 4, False),
     (2, 2, 4, False), (4, 2, 4, True), (7, 3, 0, False)],
)  # fmt: skip
def test_reference_schedule(steps_before, updates, every, expected):
    """Due when one of the batch's steps, counted before it (steps_before .. steps_before+U-1), is a multiple of N."""
    assert due(steps_before, updates, every) is expected


def test_reference_prompts_are_distinct_seeded_and_capped():
    prompts = list(range(40))
    a, b = reference_prompts(prompts, 16, 0, 5), reference_prompts(prompts, 16, 0, 5)
    assert a == b and len(set(a)) == 16
    assert reference_prompts(prompts, 16, 0, 6) != a
    assert sorted(reference_prompts(prompts, 99, 0, 5)) == prompts


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["diagnostics.grad_noise_ref_every=4"], "needs diagnostics.grad_noise=true"),
        (["diagnostics.grad_noise=true", "diagnostics.grad_noise_sets=1", "diagnostics.grad_noise_ref_every=4"],
         "needs diagnostics.grad_noise=true with grad_noise_sets >= 2"),
        (["diagnostics.grad_noise=true", "diagnostics.grad_noise_ref_every=-1"], "must be >= 0"),
    ],
)  # fmt: skip
def test_reference_config_errors(compose, overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose(overrides)  # validated on composition


def test_token_mean_b_simple_is_in_rollouts(tiny_model_dir):
    """token_mean weighs sets by tokens: trace_cov / grad_sq is in tokens, b_simple divides it by tokens per rollout."""
    batch = batch_of(2)
    m = learner_of(tiny_model_dir).train_minibatch(batch)
    assert m["grad_noise/tokens_per_rollout"] == pytest.approx(batch.n_tokens / len(batch))
    tokens = m["grad_noise/trace_cov"] / m["grad_noise/grad_sq"]
    assert m["grad_noise/b_simple"] == pytest.approx(tokens / (batch.n_tokens / len(batch)))
