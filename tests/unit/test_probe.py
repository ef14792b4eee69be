"""The group-size planner's estimators (`two-grpo probe`): pytest tests/unit/test_probe.py"""

from __future__ import annotations

import math
from math import comb

import pytest

from two_grpo.study.probe import (
    GroupSizeRow,
    count_distribution,
    group_adv_abs_mean,
    predict,
    recommend,
    split_probe_args,
)


def test_count_distribution_by_hand():
    # 4 samples, 2 correct, groups of 2 drawn without replacement: C(2,j)C(2,2-j)/C(4,2) = 1/6, 4/6, 1/6
    assert count_distribution(4, 2, 2) == pytest.approx([1 / 6, 4 / 6, 1 / 6])
    # G > n: plug-in binomial at p = 1/4, G = 5 > n = 4: C(5,j) (1/4)^j (3/4)^(5-j)
    assert count_distribution(4, 1, 5) == pytest.approx(
        [243 / 1024, 405 / 1024, 270 / 1024, 90 / 1024, 15 / 1024, 1 / 1024]
    )


@pytest.mark.parametrize("p", [0.05, 0.3, 0.5, 0.9])
@pytest.mark.parametrize("group_size", [2, 4, 16])
def test_signal_estimate_is_unbiased(p, group_size):
    """E over c ~ Binomial(k, p) of the hypergeometric signal estimate = 1 - p^G - (1-p)^G, exactly."""
    k = 16
    expected = 0.0
    for c in range(k + 1):
        dist = count_distribution(k, c, group_size)
        expected += comb(k, c) * p**c * (1 - p) ** (k - c) * (1 - dist[0] - dist[group_size])
    assert expected == pytest.approx(1 - p**group_size - (1 - p) ** group_size, abs=1e-12)


def test_plug_in_is_biased_and_flagged():
    # c ~ Binomial(4, 0.5), G = 8 > k = 4: the plug-in over-estimates the all-equal chance (Jensen), and says so
    k, g, p = 4, 8, 0.5
    plug = sum(comb(k, c) * p**k * (1 - sum(count_distribution(k, c, g)[1:g])) for c in range(k + 1))
    assert plug > p**g + (1 - p) ** g + 0.05
    rows = predict([2, 2], k, (2, 8))
    assert [r.plug_in for r in rows] == [False, True]


def test_advantage_scale_at_g2_by_hand():
    # G = 2, rewards {1, 0}: population std -> |A| = 0.5 / (0.5 + eps); sample std -> 0.7071; Dr. GRPO -> 0.5
    assert group_adv_abs_mean(2, "grpo", "population", 1e-6) == pytest.approx([0.0, 1.0, 0.0], abs=1e-5)
    assert group_adv_abs_mean(2, "grpo", "sample", 1e-6)[1] == pytest.approx(1 / math.sqrt(2), abs=1e-5)
    assert group_adv_abs_mean(2, "dr_grpo", "population", 1e-6)[1] == pytest.approx(0.5)
    assert group_adv_abs_mean(2, "sign", "population", 1e-6)[1] == pytest.approx(1.0)


def test_predict_table_by_hand():
    # two prompts, 4 samples each: c = 2 (signal at G=2: 4/6) and c = 0 (never signal)
    (row,) = predict([2, 0], 4, (2,), "sign", "population", 1e-6, {2: 0.01})
    assert row.signal_frac == pytest.approx((4 / 6 + 0) / 2)
    assert row.grad_rollouts_per_1k == pytest.approx(1000 / 3)
    assert row.signal_prompts_per_1k == pytest.approx(1000 / 6)
    assert row.adv_abs_mean == pytest.approx(1 / 3)  # sign gives |A| = 1 in every signal group
    assert row.grad_rollouts_per_s == pytest.approx((1 / 3) / 0.01)
    # SE over prompts of the per-prompt signal (4/6, 0): sample sd / sqrt(2)
    assert row.signal_frac_se == pytest.approx(math.sqrt(((4 / 6 - 1 / 3) ** 2 + (1 / 3) ** 2) / 1 / 2))


def test_recommend_follows_measured_cost():
    def row(g, frac, cost):
        return GroupSizeRow(g, frac, 0.0, 1000 * frac, 1000 * frac / g, 0.0, cost, frac / cost if cost else 0.0, False)

    # more signal at G=16, but each rollout costs 3x: G=4 gives more gradient-carrying rollouts per second
    assert recommend([row(4, 0.6, 0.001), row(16, 0.9, 0.003)]) == 4
    assert recommend([row(4, 0.6, 0.0), row(16, 0.9, 0.0)]) == 16  # untimed: per 1k rollouts


def test_probe_args():
    opts, rest = split_probe_args(["probe.prompts=8", "group_size=2", "probe.out=x"])
    assert (opts["prompts"], opts["out"], rest) == (8, "x", ["group_size=2"])
    with pytest.raises(ValueError, match="unknown probe option 'probe.promts'"):
        split_probe_args(["probe.promts=8"])
    with pytest.raises(ValueError, match="probe.samples='many': expected int"):
        split_probe_args(["probe.samples=many"])


def test_binomial_se_never_vanishes_at_a_share_of_zero_or_one():
    from two_grpo.study.probe import binomial_se

    assert binomial_se(0.25, 100) == pytest.approx(math.sqrt(0.25 * 0.75 / 100))  # by hand, unfloored
    floor = math.sqrt((0.5 / 512) * (1 - 0.5 / 512) / 512)  # p floored at 0.5/n
    assert binomial_se(0.0, 512) == pytest.approx(floor) and binomial_se(1.0, 512) == pytest.approx(floor)
    assert abs(1 / 512 - 0.0) / binomial_se(0.0, 512) < 2  # one zero-variance group in 512 against 0% predicted
    assert abs(10 / 512 - 0.0) / binomial_se(0.0, 512) > 2  # ten is not
