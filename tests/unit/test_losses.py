"""Policy loss: clip boundaries, aggregation modes, KL estimators. Run: pytest tests/unit/test_losses.py"""

import math

import pytest
import torch

from two_grpo.algo.losses import LossOptions, aggregate, kl_penalty, policy_loss


def one_token(ratio: float, adv: float, **kw):
    logp = torch.tensor([[math.log(ratio)]], requires_grad=True)
    old = torch.zeros(1, 1)
    loss, m = policy_loss(logp, old, torch.tensor([adv]), torch.ones(1, 1), LossOptions(1, 1, **kw))
    loss.backward()
    return loss.item(), logp.grad.item(), m


def test_clip_high_caps_positive_advantage():
    # A=+1, ratio e^0.5=1.6487 > 1+0.28 -> surrogate min(1.6487, 1.28) = 1.28, loss -1.28, no gradient
    loss, grad, m = one_token(math.exp(0.5), 1.0, clip_low=0.2, clip_high=0.28)
    assert loss == pytest.approx(-1.28)
    assert grad == 0.0
    assert m["loss/clip_frac_high_sum"].item() == 1.0


def test_clip_low_caps_negative_advantage():
    # A=-1, ratio 0.5 < 1-0.2 -> min(-0.5, -0.8) = -0.8, loss 0.8, no gradient
    loss, grad, m = one_token(0.5, -1.0, clip_low=0.2, clip_high=0.28)
    assert loss == pytest.approx(0.8)
    assert grad == 0.0
    assert m["loss/clip_frac_low_sum"].item() == 1.0


def test_inside_the_clip_range_gradient_flows():
    # A=+1, ratio 1.1 in [0.8, 1.28] -> loss -1.1; d(-ratio)/dlogp = -ratio = -1.1
    loss, grad, _ = one_token(1.1, 1.0)
    assert loss == pytest.approx(-1.1)
    assert grad == pytest.approx(-1.1)


def test_no_clip_is_plain_importance_weighting():
    # A=+1, ratio e^0.5 -> loss -1.6487 with gradient -1.6487
    loss, grad, _ = one_token(math.exp(0.5), 1.0, clip=False)
    assert loss == pytest.approx(-math.exp(0.5))
    assert grad == pytest.approx(-math.exp(0.5))


def test_aggregation_modes_by_hand():
    # sequence a has 1 token of value a=1, sequence b has 3 tokens of value b=2
    values = torch.tensor([[1.0, 0, 0], [2.0, 2.0, 2.0]])
    mask = torch.tensor([[1.0, 0, 0], [1.0, 1.0, 1.0]])
    # token_mean (a + 3b) / 4 = 7/4
    assert aggregate(values, mask, "token_mean", 4, 2).item() == pytest.approx(1.75)
    # seq_mean_token_mean (a + b) / 2 = 1.5
    assert aggregate(values, mask, "seq_mean_token_mean", 4, 2).item() == pytest.approx(1.5)
    # seq_mean_token_sum (a + 3b) / 2 = 3.5
    assert aggregate(values, mask, "seq_mean_token_sum", 4, 2).item() == pytest.approx(3.5)


def test_micro_batch_shares_sum_to_the_mini_batch_loss():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(6, 5, generator=g)
    old = logp + 0.1 * torch.randn(6, 5, generator=g)
    adv = torch.randn(6, generator=g)
    mask = (torch.rand(6, 5, generator=g) > 0.3).float()
    for agg in ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum"):
        opts = LossOptions(agg=agg, minibatch_tokens=mask.sum().item(), minibatch_seqs=6)
        whole, _ = policy_loss(logp, old, adv, mask, opts)
        parts = sum(
            policy_loss(logp[i : i + 2], old[i : i + 2], adv[i : i + 2], mask[i : i + 2], opts)[0] for i in (0, 2, 4)
        )
        assert parts.item() == pytest.approx(whole.item(), abs=1e-6)


def test_kl_estimators():
    same = torch.tensor([[-1.0, -2.0]])
    assert kl_penalty(same, same, "k1").abs().sum().item() == 0.0
    assert kl_penalty(same, same, "k3").abs().sum().item() == 0.0
    # logp - ref = 0.5: k1 = 0.5; k3 = e^-0.5 + 0.5 - 1 = 0.10653
    lp, ref = torch.tensor([[0.0]]), torch.tensor([[-0.5]])
    assert kl_penalty(lp, ref, "k1").item() == pytest.approx(0.5)
    assert kl_penalty(lp, ref, "k3").item() == pytest.approx(math.exp(-0.5) - 0.5, abs=1e-6)


def test_kl_term_is_added_with_its_coefficient():
    logp = torch.tensor([[0.0]])
    loss, m = policy_loss(
        logp,
        logp,
        torch.tensor([0.0]),
        torch.ones(1, 1),
        LossOptions(minibatch_tokens=1, minibatch_seqs=1, kl_coef=0.1, kl_estimator="k1"),
        ref_logp=torch.tensor([[-0.5]]),
    )
    assert loss.item() == pytest.approx(0.05)  # policy term 0 (A=0) + 0.1 * 0.5
    assert m["loss/kl"].item() == pytest.approx(0.5)
