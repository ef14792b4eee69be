"""The report's statistics on synthetic runs with a known difference: bootstrap coverage, pairing, Holm by hand,
t intervals, seeds needed, Pass@k for k < n, curves on a grid. Run: pytest tests/unit/test_stats.py"""

from itertools import combinations

import numpy as np
import pytest

from two_grpo.study import stats


def synthetic(rng, delta, seeds=8, prompts=64, k=4, sd_shared=0.08, sd_own=0.03):
    """Per-prompt mean@k matrices [seeds, prompts] of a config and a baseline that share seeds and prompts:
    prompt solve rate = prompt difficulty + shared seed effect (+ delta + own seed noise for the config),
    k Bernoulli samples each. True difference of the expected scores: delta (no clipping at these values)."""
    difficulty = rng.uniform(0.3, 0.6, prompts)
    shared = rng.normal(0, sd_shared, (seeds, 1))
    p_base = difficulty + shared + rng.normal(0, sd_own, (seeds, 1))
    p_conf = difficulty + shared + delta + rng.normal(0, sd_own, (seeds, 1))
    assert 0 < p_base.min() and p_conf.max() < 1  # else clipping would move the truth away from delta
    return rng.binomial(k, p_conf) / k, rng.binomial(k, p_base) / k


def test_paired_bootstrap_covers_the_true_difference_about_95_percent():
    # population truth: E[conf - base] = delta; prompts and seeds are drawn afresh in every repetition
    rng = np.random.default_rng(1)
    reps, delta, hits = 200, 0.05, 0
    for i in range(reps):
        a, b = synthetic(rng, delta)
        c = stats.compare(a, b, n_boot=800, seed=i)
        hits += c.lower <= delta <= c.upper
    assert 0.91 <= hits / reps <= 0.985, hits / reps


def test_resampling_prompts_too_is_wider_but_still_covers():
    rng = np.random.default_rng(4)
    a, b = synthetic(rng, 0.05)
    seeds_only, both = stats.compare(a, b, seed=0), stats.compare(a, b, seed=0, prompts=True)
    assert both.half_width > seeds_only.half_width
    # seeds only: the expanded percentile interval is close to the exact paired t interval
    m, lo, hi = stats.t_interval((a - b).mean(1))
    assert seeds_only.half_width == pytest.approx((hi - lo) / 2, rel=0.15)


def test_pairing_narrows_the_interval():
    rng = np.random.default_rng(2)
    widths_paired, widths_unpaired = [], []
    for i in range(20):
        a, b = synthetic(rng, 0.03, sd_shared=0.06)
        widths_paired.append(stats.compare(a, b, paired=True, seed=i).half_width)
        widths_unpaired.append(stats.compare(a, b, paired=False, seed=i).half_width)
    assert np.median(widths_paired) < 0.6 * np.median(widths_unpaired)


def test_no_difference_gives_a_p_value_that_is_not_small_and_a_clear_effect_a_small_one():
    rng = np.random.default_rng(3)
    null_p = [stats.compare(*synthetic(rng, 0.0), seed=i).p_value for i in range(40)]
    assert np.mean(np.array(null_p) < 0.05) <= 0.15  # about 5% false positives
    strong = stats.compare(*synthetic(rng, 0.12), seed=0)
    assert strong.p_value < 0.01 and strong.lower > 0


def test_ratio_and_probability_of_improvement():
    a = np.array([[0.6, 0.6], [0.8, 0.8], [0.7, 0.7]])
    b = np.array([[0.5, 0.5], [0.5, 0.5], [0.9, 0.9]])
    c = stats.compare(a, b, seed=0)
    assert c.diff == pytest.approx(0.7 - 1.9 / 3)
    assert c.ratio == pytest.approx(0.7 / (1.9 / 3))
    # per-seed a {0.6, 0.8, 0.7} vs b {0.5, 0.5, 0.9}: a beats b in 6 of 9 pairs
    assert c.prob_improvement == pytest.approx(6 / 9)
    assert c.poi_lower <= c.prob_improvement <= c.poi_upper
    assert c.ratio_lower <= c.ratio <= c.ratio_upper


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.04, 0.30 with m = 4: x4 = 0.04, x3 = 0.06, x2 = 0.08, x1 = 0.30 (running max kept)
    assert stats.holm([0.04, 0.01, 0.30, 0.02]) == pytest.approx([0.08, 0.04, 0.30, 0.06])
    # monotone: 0.02 x 3 = 0.06, then 0.025 x 2 = 0.05 < 0.06 -> 0.06; capped at 1
    assert stats.holm([0.02, 0.025, 0.9]) == pytest.approx([0.06, 0.06, 0.9])
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_t_interval_exact_quantile_and_clipped_to_the_range():
    # values 0.1, 0.3: mean 0.2, sd 0.1414, t_{0.975,1} = 12.706 -> half-width 12.706 * 0.1414 / sqrt 2 = 1.2706
    m, lo, hi = stats.t_interval([0.1, 0.3], lo=0.0, hi=1.0)
    assert m == pytest.approx(0.2) and lo == 0.0 and hi == 1.0
    m, lo, hi = stats.t_interval([0.1, 0.3])
    assert hi - m == pytest.approx(1.2706, abs=1e-3)
    assert stats.t_quantile(7) == pytest.approx(2.3646, abs=1e-4)


def test_seeds_needed_and_verdicts():
    # sd 0.1, target half-width 0.025: n = 64 gives t_63 * 0.1 / sqrt(64) = 1.9983 * 0.0125 = 0.02498,
    # n = 63 gives 1.9990 * 0.1 / sqrt(63) = 0.02519
    n = stats.seeds_needed(0.1, 0.025)
    assert n == 64
    assert stats.t_quantile(n - 2) * 0.1 / np.sqrt(n - 1) > 0.025
    c = stats.Comparison(-0.031, -0.05, -0.012, 0.004, 8, 64, 0.02, 0.9, 0.8, 1.0, 0.2, 0.1, 0.3)
    assert stats.verdict(c, 0.01, 0.05) == ("worse", 0)
    assert stats.verdict(c, 0.2, 0.03)[0] == "no difference resolved"  # Holm p too large, wider than 0.03
    assert stats.verdict(c, 0.2, 0.05)[0] == "equivalent"  # inside ±0.05
    wide = stats.Comparison(0.01, -0.08, 0.10, 0.7, 2, 64, 0.06, 1, 0.8, 1.2, 0.5, 0, 1)
    word, seeds = stats.verdict(wide, 0.7, 0.05)
    assert word == "no difference resolved" and seeds == stats.seeds_needed(0.06, 0.025)
    tight = stats.Comparison(0.005, -0.02, 0.03, 0.7, 8, 64, 0.01, 1, 0.9, 1.1, 0.5, 0.3, 0.7)
    assert stats.verdict(tight, 0.7, 0.05) == ("equivalent", 0)


def test_pass_at_ks_for_every_k_below_n_match_enumeration():
    prompts = [[1.0, 0.0, 0.0, 1.0, 0.0], [0.0] * 5, [1.0, 0.5, 0.0, 0.0, 0.0], [1.0] * 5]
    got = stats.pass_at_ks(prompts)
    assert set(got) == {1, 2, 3, 4, 5}
    for k in range(1, 6):
        per = [np.mean([any(r[i] == 1.0 for i in s) for s in combinations(range(5), k)]) for r in prompts]
        assert got[k] == pytest.approx(np.mean(per), abs=1e-12), k
    assert got[1] == pytest.approx((2 / 5 + 0 + 1 / 5 + 1) / 4)  # Pass@1 = solve rate (0.5 is not solved)


def test_iqm_ignores_one_collapsed_seed():
    assert stats.iqm([0.5, 0.5, 0.6, 0.6, 0.55, 0.55, 0.52, 0.0]) == pytest.approx(np.mean([0.5, 0.52, 0.55, 0.55]))


def test_curves_on_a_grid_band_and_first_crossing():
    grid = [0, 50, 100, 150, 250]
    assert np.allclose(stats.interp_curve([0, 100, 200], [0.2, 0.4, 0.6], grid)[:4], [0.2, 0.3, 0.4, 0.5])
    assert np.isnan(stats.interp_curve([0, 100, 200], [0.2, 0.4, 0.6], grid)[4])
    mean, lo, hi = stats.band(np.array([[0.1, 0.2], [0.3, 0.4], [0.2, 0.3]]))
    assert mean == pytest.approx([0.2, 0.3]) and (lo <= mean).all() and (hi >= mean).all()
    # 0.2 at 0, 0.4 at 100: 0.35 is reached at 75
    assert stats.first_crossing([0, 100, 200], [0.2, 0.4, 0.6], 0.35) == pytest.approx(75)
    assert np.isnan(stats.first_crossing([0, 100], [0.2, 0.4], 0.5))
