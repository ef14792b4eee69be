"""Unbiased Pass@k against brute-force enumeration. Run: pytest tests/unit/test_pass_at_k.py"""

from itertools import combinations

import pytest

from two_grpo.study.evaluate import pass_at_k


@pytest.mark.parametrize("n,c,k", [(5, 0, 1), (5, 2, 1), (5, 2, 3), (6, 3, 6), (4, 4, 2), (7, 1, 4)])
def test_matches_enumeration(n, c, k):
    samples = [1] * c + [0] * (n - c)
    subsets = list(combinations(range(n), k))
    brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
    assert pass_at_k(n, c, k) == pytest.approx(brute)


def test_pass_at_1_is_the_solve_rate():
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
