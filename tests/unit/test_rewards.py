"""Task rewards: exact arithmetic, math-verify answers, malformed output, the deadline pool.
Run: pytest tests/unit/test_rewards.py"""

import time

import pytest

from two_grpo.tasks.math_task import last_boxed, math_verify_score
from two_grpo.tasks.sandbox import ScoringPool
from two_grpo.tasks.toy_arith import exact_score, partial_score


@pytest.mark.parametrize(
    "completion,expected",
    [
        ("46", 1.0),
        (" 46 ", 1.0),
        ("046", 1.0),
        ("47", 0.0),
        ("46 47", 0.0),
        ("", 0.0),
        ("forty-six", 0.0),
        ("4" * 100_000, 0.0),
    ],
)
def test_exact_score(completion, expected):
    assert exact_score("46", completion) == expected


def test_partial_credit_is_graded_and_below_exact():
    assert partial_score("123", "123") == 1.0
    assert partial_score("123", "124") == pytest.approx(0.5 * 2 / 3)  # 2 of 3 characters right, scaled by 0.5
    assert partial_score("123", "999") == 0.0
    assert partial_score("-86", "") == 0.0


@pytest.mark.parametrize(
    "gold,completion,expected",
    [
        ("42", "The answer is \\boxed{42}.", 1.0),
        ("\\frac{1}{2}", "so we get \\boxed{0.5}", 1.0),
        ("0.5", "$\\frac{1}{2}$", 1.0),
        ("3", "\\boxed{3.0}", 1.0),
        ("42", "\\boxed{41}", 0.0),
        ("42", "garbage \\boxed{4", 0.0),
        ("42", "", 0.0),
        ("42", "}}{{\\frac{", 0.0),
    ],
)
def test_math_verify_score(gold, completion, expected):
    assert math_verify_score(gold, completion) == expected


def test_last_boxed_handles_nesting():
    assert last_boxed("a \\boxed{1} then \\boxed{\\frac{1}{2}} end") == "\\frac{1}{2}"
    assert last_boxed("no box") is None
    assert last_boxed("\\boxed{unclosed") is None


def _sleepy(gold: str, completion: str) -> float:
    if completion == "hang":
        time.sleep(60)
    if completion == "raise":
        raise RuntimeError("boom")
    return float(gold == completion)


def test_pool_kills_a_hang_and_keeps_order():
    with ScoringPool(_sleepy, workers=2, timeout_s=1.0) as pool:
        t0 = time.monotonic()
        out = pool.map([("a", "a"), ("a", "hang"), ("b", "raise"), ("c", "c"), ("c", "x")])
        elapsed = time.monotonic() - t0
        assert [o.value for o in out] == [1.0, 0.0, 0.0, 1.0, 0.0]
        assert [o.status for o in out] == ["ok", "timeout", "error", "ok", "ok"]
        assert "boom" in out[2].detail
        assert elapsed < 10
        procs = [w.proc for w in pool._workers]
        assert all(p.is_alive() for p in procs)  # the killed worker was replaced
    assert all(not p.is_alive() for p in procs)


def test_pool_scores_math_verify_like_the_main_thread():
    cases = [("42", "\\boxed{42}"), ("\\frac{1}{2}", "\\boxed{0.5}"), ("7", "\\boxed{8}")]
    with ScoringPool(math_verify_score, workers=1, timeout_s=10.0) as pool:
        got = [o.value for o in pool.map(cases)]
    assert got == [math_verify_score(g, c) for g, c in cases] == [1.0, 1.0, 0.0]
