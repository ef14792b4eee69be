"""Pass@k and the zero-variance predictions against brute-force enumeration; signal metrics by hand.
Run: pytest tests/unit/test_eval_signal.py"""

from itertools import combinations
from types import SimpleNamespace

import pytest

from two_grpo.algo.signal import predicted_zero_var_frac, signal_metrics
from two_grpo.study.evaluate import pass_at_k, zero_var_prob


def _all_cases(max_n=8):
    return [(n, c, k) for n in range(1, max_n + 1) for c in range(n + 1) for k in range(1, n + 1)]


@pytest.mark.parametrize("n,c,k", _all_cases())
def test_pass_at_k_is_the_share_of_k_subsets_with_a_correct_sample(n, c, k):
    samples = [1] * c + [0] * (n - c)
    subsets = list(combinations(range(n), k))
    brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
    assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)


@pytest.mark.parametrize("n,c,g", _all_cases())
def test_zero_var_prob_is_the_share_of_g_subsets_all_equal(n, c, g):
    samples = [1] * c + [0] * (n - c)
    subsets = list(combinations(range(n), g))
    brute = sum(len({samples[i] for i in s}) == 1 for s in subsets) / len(subsets)
    assert zero_var_prob(n, c, g) == pytest.approx(brute, abs=1e-12)


def test_zero_var_prob_is_unbiased_for_p_to_the_g():
    # Averaging the estimator over the binomial(n, p) law of c gives p^G + (1-p)^G exactly.
    from math import comb

    n, p, g = 8, 0.3, 2
    expected = sum(comb(n, c) * p**c * (1 - p) ** (n - c) * zero_var_prob(n, c, g) for c in range(n + 1))
    assert expected == pytest.approx(0.3**2 + 0.7**2)  # 0.09 + 0.49 = 0.58


def test_predicted_zero_var_frac_by_hand():
    assert predicted_zero_var_frac(0.18, 2) == pytest.approx(0.7048)  # 0.0324 + 0.6724: CoursIA's "70%"
    assert predicted_zero_var_frac(0.5, 16) == pytest.approx(2 * 0.5**16)
    assert predicted_zero_var_frac(1.0, 4) == 1.0


def test_signal_metrics_by_hand():
    # two groups of G=2: (1, 0) with advantages +-1, (0, 0) with 0, 0 -> half the rollouts carry no gradient
    rows = [(1.0, 1.0), (0.0, -1.0), (0.0, 0.0), (0.0, 0.0)]
    rollouts = [SimpleNamespace(reward=r, advantage=a) for r, a in rows]
    m = signal_metrics(rollouts, None, group_size=2)
    assert m["rollout/zero_adv_frac"] == 0.5
    assert m["adv/abs_mean_nonzero"] == 1.0
    assert m["rollout/zero_var_pred_batch_p"] == pytest.approx(0.25**2 + 0.75**2)  # solve rate 1/4 -> 0.625
