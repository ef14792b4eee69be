"""Advantage estimators against hand-computed values. Run: pytest tests/unit/test_advantages.py"""

import pytest
import torch

from two_grpo.algo.advantages import compute_advantages

PAIR = torch.tensor([1.0, 0.0])
IDS = torch.tensor([7, 7])


@pytest.mark.parametrize(
    "estimator,std,expected",
    [
        # mean 0.5, population std sqrt(((0.5)^2 + (0.5)^2)/2) = 0.5 -> 0.5/0.5 = 1
        ("grpo", "population", 1.0),
        # sample std sqrt(0.5/(2-1)) = 0.7071 -> 0.5/0.7071 = 0.7071
        ("grpo", "sample", 0.70710678),
        # no std: r - mean = +-0.5
        ("dr_grpo", "population", 0.5),
        # sign(+-0.5) = +-1
        ("sign", "population", 1.0),
        # leave-one-out: 1 - 0 = 1 and 0 - 1 = -1
        ("rloo", "population", 1.0),
    ],
)
def test_group_of_two(estimator, std, expected):
    adv, zero_var = compute_advantages(PAIR, IDS, estimator, std, eps=1e-6)
    assert adv[0].item() == pytest.approx(expected, abs=1e-5)
    assert adv[1].item() == pytest.approx(-expected, abs=1e-5)
    assert not zero_var.any()


def test_eps_is_in_the_denominator():
    # population std 0.5, eps 0.5 -> 0.5 / (0.5 + 0.5) = 0.5
    adv, _ = compute_advantages(PAIR, IDS, "grpo", "population", eps=0.5)
    assert adv.tolist() == pytest.approx([0.5, -0.5])


def test_batch_std_keeps_magnitude_across_groups():
    # group a: {1, 0} -> centered +-0.5; group b: {0.2, 0} -> centered +-0.1
    # batch population std of [0.5, -0.5, 0.1, -0.1] = sqrt((0.25+0.25+0.01+0.01)/4) = sqrt(0.13) = 0.36056
    r = torch.tensor([1.0, 0.0, 0.2, 0.0])
    ids = torch.tensor([0, 0, 1, 1])
    adv, _ = compute_advantages(r, ids, "batch_std", eps=0.0)
    assert adv.tolist() == pytest.approx([0.5 / 0.36056, -0.5 / 0.36056, 0.1 / 0.36056, -0.1 / 0.36056], rel=1e-4)
    grpo, _ = compute_advantages(r, ids, "grpo", "population", eps=0.0)
    assert grpo.tolist() == pytest.approx([1, -1, 1, -1], abs=1e-5)  # group std erases the 5x difference


def test_zero_variance_groups_get_zero_and_are_flagged():
    r = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 0.0])
    ids = torch.tensor([0, 0, 1, 1, 2, 2])
    for est in ("grpo", "dr_grpo", "batch_std", "sign", "rloo"):
        adv, zero_var = compute_advantages(r, ids, est)
        assert zero_var.tolist() == [True, True, True, True, False, False]
        assert adv[:4].abs().sum().item() == 0.0


def test_group_of_four_sample_vs_population():
    # rewards {1,0,0,0}: mean 0.25; population var = (0.5625 + 3*0.0625)/4 = 0.1875 -> std 0.43301
    # sample var = 0.75/3 = 0.25 -> std 0.5; the winner gets 0.75/0.43301 = 1.7321 vs 0.75/0.5 = 1.5
    r = torch.tensor([1.0, 0.0, 0.0, 0.0])
    ids = torch.zeros(4, dtype=torch.long)
    pop, _ = compute_advantages(r, ids, "grpo", "population", eps=0.0)
    smp, _ = compute_advantages(r, ids, "grpo", "sample", eps=0.0)
    assert pop[0].item() == pytest.approx(1.7321, abs=1e-4)
    assert smp[0].item() == pytest.approx(1.5, abs=1e-6)
    rloo, _ = compute_advantages(r, ids, "rloo")
    assert rloo.tolist() == pytest.approx([1.0, -1 / 3, -1 / 3, -1 / 3])  # 1 - 0, 0 - 1/3


def _loop_reference(rewards, ids, std, eps):
    out = []
    for i, g in enumerate(ids.tolist()):
        members = [rewards[j].item() for j in range(len(ids)) if ids[j].item() == g]
        mean = sum(members) / len(members)
        denom = len(members) - (1 if std == "sample" else 0)
        s = (sum((x - mean) ** 2 for x in members) / denom) ** 0.5
        out.append(0.0 if max(members) == min(members) else (rewards[i].item() - mean) / (s + eps))
    return out


@pytest.mark.parametrize("std", ["population", "sample"])
def test_vectorised_matches_loop_and_ignores_order(std):
    g = torch.Generator().manual_seed(0)
    rewards = torch.randint(0, 2, (48,), generator=g).float() * torch.rand(48, generator=g)
    ids = torch.arange(12).repeat_interleave(4) * 13 + 5  # arbitrary id values
    adv, _ = compute_advantages(rewards, ids, "grpo", std, eps=1e-6)
    assert adv.tolist() == pytest.approx(_loop_reference(rewards, ids, std, 1e-6), abs=1e-5)
    perm = torch.randperm(48, generator=g)
    adv_perm, _ = compute_advantages(rewards[perm], ids[perm], "grpo", std, eps=1e-6)
    assert torch.allclose(adv_perm, adv[perm], atol=1e-6)


def test_non_finite_reward_is_an_error():
    with pytest.raises(ValueError, match="NaN or inf"):
        compute_advantages(torch.tensor([1.0, float("nan")]), IDS)


# The critique's batch std, two ways. Rewards [1,0],[1,1]: group means 0.5 and 1 -> centred [0.5,-0.5,0,0].
# rewards (TRL scale_rewards="batch"): sample std of the raw rewards [1,0,1,1]: mean 0.75, squares
#   0.0625+0.5625+0.0625+0.0625 = 0.75, / (4-1) = 0.25 -> std 0.5 -> 0.5 / (0.5 + 1e-4) = 0.99980
# centered: population std of [0.5,-0.5,0,0] = sqrt(0.5/4) = 0.35355 -> 0.5 / 0.35355 = 1.41421
TWO_PAIRS = torch.tensor([1.0, 0.0, 1.0, 1.0])
TWO_IDS = torch.tensor([0, 0, 1, 1])


@pytest.mark.parametrize("of,expected", [("rewards", 0.5 / (0.5 + 1e-4)), ("centered", 0.5 / (0.5**0.5 / 2 + 1e-4))])
def test_batch_std_of_rewards_is_trl_and_centered_is_ours(of, expected):
    adv, zero_var = compute_advantages(TWO_PAIRS, TWO_IDS, "batch_std", eps=1e-4, batch_std_of=of)
    assert adv.tolist() == pytest.approx([expected, -expected, 0.0, 0.0], abs=1e-4)
    assert zero_var.tolist() == [False, False, True, True]


def test_batch_std_of_rewards_matches_trl_formula_on_graded_rewards():
    # TRL: advantages = rewards - mean_grouped; advantages /= rewards.std() + 1e-4 (torch.std is unbiased)
    r = torch.tensor([0.5, 0.0, 1.0, 0.25, 0.75, 0.75])
    ids = torch.tensor([3, 3, 9, 9, 4, 4])
    mean_g = torch.tensor([0.25, 0.25, 0.625, 0.625, 0.75, 0.75])
    expected = (r - mean_g) / (r.std() + 1e-4)
    adv, _ = compute_advantages(r, ids, "batch_std", eps=1e-4, batch_std_of="rewards")
    assert adv.tolist() == pytest.approx(expected.tolist(), abs=1e-6)


def test_batch_std_of_rejects_unknown():
    with pytest.raises(ValueError, match="batch_std_of"):
        compute_advantages(TWO_PAIRS, TWO_IDS, "batch_std", batch_std_of="group")
