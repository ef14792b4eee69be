"""The DPO form of 2-GRPO (algo/pairwise.py) against GRPO's policy gradient: pytest tests/unit/test_pairwise.py"""

from __future__ import annotations

import math

import pytest
import torch

from two_grpo.algo.advantages import compute_advantages
from two_grpo.algo.losses import LossOptions, policy_loss
from two_grpo.algo.pairwise import pair_rows, pairwise_loss


def grpo_grad(logp, old, mask, rewards, group_ids, estimator="sign", std="population"):
    """d loss / d logp of unclipped GRPO with seq_mean_token_mean over the batch (the paper's Eq. 14)."""
    adv, _ = compute_advantages(rewards, group_ids, estimator, std, eps=0.0 if estimator != "grpo" else 1e-12)
    x = logp.clone().requires_grad_(True)
    opts = LossOptions(clip=False, agg="seq_mean_token_mean", minibatch_tokens=1.0, minibatch_seqs=len(rewards))
    loss, _ = policy_loss(x, old, adv, mask, opts)
    loss.backward()
    return x.grad


def pair_grad(logp, old, mask, rewards, group_ids, beta):
    x = logp.clone().requires_grad_(True)
    loss, metrics = pairwise_loss(x, old, mask, rewards, group_ids, beta=beta, minibatch_pairs=len(rewards) / 2)
    loss.backward()
    return x.grad, loss, metrics


def test_two_token_example_by_hand():
    # pair: o+ has 2 tokens, o- has 1 (its second position is padding); on-policy (logp = old)
    logp = torch.tensor([[-0.5, -1.0], [-0.7, 0.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    rewards, gid = torch.tensor([1.0, 0.0]), torch.tensor([7, 7])
    # GRPO, A = +-1, R = 2: loss = -1/2 [ (rho11 + rho12)/2 - rho21 ] -> d/dlogp = -1/4, -1/4, +1/2 (rho = 1)
    expected = torch.tensor([[-0.25, -0.25], [0.5, 0.0]])
    assert torch.allclose(grpo_grad(logp, logp, mask, rewards, gid), expected, atol=1e-7)
    # pairwise: m = (D11 + D12)/2 - D21 = 0, dL/dm = -sigmoid(0) = -1/2 for any beta: the same numbers
    for beta in (1e-3, 0.1, 1.0, 10.0):
        g, loss, metrics = pair_grad(logp, logp, mask, rewards, gid, beta)
        assert torch.allclose(g, expected, atol=1e-6)
        assert float(loss.detach()) == pytest.approx(0.0, abs=1e-6)  # shifted to read 0 on-policy
    # the sample std gives advantages +-0.7071: GRPO's gradient is 0.7071 x the pairwise one
    g_sample = grpo_grad(logp, logp, mask, rewards, gid, estimator="grpo", std="sample")
    assert torch.allclose(g_sample, expected / math.sqrt(2), atol=1e-6)
    g_pop = grpo_grad(logp, logp, mask, rewards, gid, estimator="grpo", std="population")
    assert torch.allclose(g_pop, expected, atol=1e-6)


def test_tied_pairs_carry_no_signal_but_count():
    logp = torch.randn(4, 3)
    mask = torch.ones(4, 3)
    rewards, gid = torch.tensor([1.0, 1.0, 0.0, 1.0]), torch.tensor([0, 0, 1, 1])
    g, _, m = pair_grad(logp, logp + 0.1, mask, rewards, gid, beta=0.5)
    assert (float(m["loss/pairs_signal"]), float(m["loss/pairs_tied"])) == (1.0, 1.0)
    assert torch.equal(g[:2], torch.zeros(2, 3))  # the tied group: no gradient
    assert g[2:].abs().sum() > 0


@pytest.mark.parametrize("seed", range(5))
def test_equals_grpo_on_policy_on_random_tensors(seed):
    g = torch.Generator().manual_seed(seed)
    n_pairs, t = 16, 9
    logp = -torch.rand(2 * n_pairs, t, generator=g) * 3
    lengths = torch.randint(1, t + 1, (2 * n_pairs,), generator=g)
    mask = (torch.arange(t)[None, :] < lengths[:, None]).float()
    rewards = torch.randint(0, 2, (2 * n_pairs,), generator=g).float()
    gid = torch.arange(n_pairs).repeat_interleave(2)[torch.randperm(2 * n_pairs, generator=g)]  # any row order
    expected = grpo_grad(logp, logp, mask, rewards, gid)
    got, _, _ = pair_grad(logp, logp, mask, rewards, gid, beta=0.3)
    assert torch.allclose(got, expected, atol=1e-6)


def test_off_policy_agreement_is_first_order():
    """Off-policy (log-ratios of size eps) and small beta: the gap to GRPO shrinks like eps (first order)."""
    g = torch.Generator().manual_seed(3)
    logp = -torch.rand(8, 5, generator=g) * 2
    mask = torch.ones(8, 5)
    rewards, gid = torch.tensor([1.0, 0, 0, 1, 1, 0, 1, 1]), torch.arange(4).repeat_interleave(2)
    noise = torch.randn(8, 5, generator=g)
    gaps = []
    for eps in (1e-1, 1e-2, 1e-3):
        old = logp + eps * noise
        gap = (pair_grad(logp, old, mask, rewards, gid, beta=eps)[0] - grpo_grad(logp, old, mask, rewards, gid)).abs()
        gaps.append(float(gap.max()))
    assert gaps[0] > 0
    assert gaps[1] < gaps[0] / 5 and gaps[2] < gaps[1] / 5, gaps


def test_pair_rows_and_bad_groups():
    pos, neg, signal = pair_rows(torch.tensor([0.0, 1.0, 0.5, 0.5]), torch.tensor([3, 3, 1, 1]))
    assert sorted(zip(pos.tolist(), neg.tolist(), signal.tolist())) == [(1, 0, True), (2, 3, False)]
    with pytest.raises(ValueError, match="groups of exactly 2 rows"):
        pair_rows(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([0, 0, 0]))
    with pytest.raises(ValueError, match="beta > 0"):
        pairwise_loss(torch.zeros(2, 1), torch.zeros(2, 1), torch.ones(2, 1), torch.ones(2), torch.zeros(2), beta=0.0,
                      minibatch_pairs=1)  # fmt: skip
