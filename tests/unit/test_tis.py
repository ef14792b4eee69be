"""Train/inference mismatch metrics and truncated importance sampling. Run: pytest tests/unit/test_tis.py"""

import math

import pytest
import torch

from two_grpo.algo.losses import LossOptions, policy_loss
from two_grpo.algo.tis import mismatch_sums, tis_weight
from two_grpo.data.batch import Rollout, collate
from two_grpo.learner.step import accumulate, summarize


def test_tis_weight_is_the_capped_ratio_without_gradient():
    learner = torch.tensor([[math.log(0.5), math.log(0.9), math.log(0.2)]], requires_grad=True)
    engine = torch.tensor([[math.log(0.25), math.log(0.9), math.log(0.8)]])
    w = tis_weight(learner, engine, cap=1.5)
    # ratios 0.5/0.25 = 2 -> capped 1.5; 0.9/0.9 = 1; 0.2/0.8 = 0.25
    torch.testing.assert_close(w, torch.tensor([[1.5, 1.0, 0.25]]))
    assert not w.requires_grad


def test_mismatch_sums_mean_and_max_over_response_tokens_only():
    learner = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -9.0]])
    engine = torch.tensor([[-1.1, -2.0, -1.0], [-0.2, -0.5, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0]])  # the big gaps (2 and 9) sit on padding
    m = mismatch_sums(learner, engine, mask)
    # |diff| on response tokens: 0.1, 0, 0.3, 0 -> sum 0.4, max 0.3
    assert abs(float(m["rollout/logprob_diff_mean_sum"]) - 0.4) < 1e-6
    assert abs(float(m["rollout/logprob_diff_max"]) - 0.3) < 1e-6


def test_accumulate_sums_token_sums_and_maxes_maxes_across_micro_batches():
    sums: dict[str, float] = {}
    accumulate(sums, {"a_sum": torch.tensor(1.0), "rollout/logprob_diff_max": torch.tensor(0.3)})
    accumulate(sums, {"a_sum": torch.tensor(2.0), "rollout/logprob_diff_max": torch.tensor(0.1)})
    assert sums == pytest.approx({"a_sum": 3.0, "rollout/logprob_diff_max": 0.3})
    assert summarize(sums, n_tokens=6.0) == pytest.approx({"a": 0.5, "rollout/logprob_diff_max": 0.3})


def test_token_weight_scales_each_token_loss():
    logp = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    adv, mask = torch.tensor([2.0]), torch.ones(1, 2)
    opts = LossOptions(clip=True, agg="token_mean", minibatch_tokens=2.0, minibatch_seqs=1.0)
    plain, _ = policy_loss(logp, logp.detach(), adv, mask, opts)
    weighted, _ = policy_loss(logp, logp.detach(), adv, mask, opts, token_weight=torch.tensor([[0.5, 1.5]]))
    # on-policy ratio 1: per-token loss -2 each; plain mean -2; weighted (-1 + -3) / 2 = -2; gradient differs
    assert abs(float(plain.detach()) + 2.0) < 1e-6 and abs(float(weighted.detach()) + 2.0) < 1e-6
    (g,) = torch.autograd.grad(weighted, logp)
    torch.testing.assert_close(g, torch.tensor([[-0.5, -1.5]]))  # d/dlogp of -w*A*ratio/2 = -w*2*1/2


def test_collate_aligns_engine_logprobs_with_the_loss_mask():
    a = Rollout(0, 0, [5, 6, 7], [8, 9], "", "stop", sample_logprobs=[-0.1, -0.2])
    b = Rollout(0, 1, [5], [8, 9, 10], "", "length", sample_logprobs=[-0.3, -0.4, -0.5])
    batch = collate([a, b], pad_id=0)
    assert batch.behav_logp is not None
    torch.testing.assert_close(batch.behav_logp[batch.loss_mask.bool()], torch.tensor([-0.1, -0.2, -0.3, -0.4, -0.5]))
    assert float(batch.behav_logp[~batch.loss_mask.bool()].abs().sum()) == 0.0
    assert batch.select(torch.tensor([1])).behav_logp.shape == (1, 3)
    hf_style = Rollout(0, 2, [5], [8], "", "stop")  # an engine without log-probs: no behaviour tensor at all
    assert collate([a, hf_style], pad_id=0).behav_logp is None
