"""Hostile completions, raising and non-finite rewards, the failed-reward ceiling, and the answer table
(main thread vs worker pool)."""

from __future__ import annotations

import json
import math
import os
import random
import string
import time
from pathlib import Path

import pytest

from two_grpo.data.batch import Prompt, Rollout
from two_grpo.run.guards import GuardTripped, check_reward_failures
from two_grpo.tasks.math_task import math_verify_score
from two_grpo.tasks.rewards import RewardScorer
from two_grpo.tasks.sandbox import ScoringPool

TABLE = [
    json.loads(x) for x in (Path(__file__).parents[1] / "data" / "answer_equivalence.jsonl").read_text().splitlines()
]


def child_pids() -> set[int]:
    """Live or zombie processes whose parent is this process (read from /proc), except multiprocessing's
    resource tracker (one per interpreter, started with the first spawned process and kept on purpose)."""
    from multiprocessing import resource_tracker

    tracker = getattr(resource_tracker._resource_tracker, "_pid", None)
    me, out = os.getpid(), set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me and int(entry) != tracker:
                out.add(int(entry))
    return out


def hostile_cases() -> dict[str, str]:
    rng = random.Random(0)
    return {
        "1 MB of random text": "".join(rng.choice(string.printable) for _ in range(1_000_000)),
        "power tower": "\\boxed{5^{5^{5^{5^5}}}}",
        "3000 nested fracs": "\\boxed{" + "\\frac{1}{" * 3000 + "2" + "}" * 3000 + "}",
        "24! x 24!": "\\boxed{24!\\times24!}",
    }


@pytest.mark.slow
def test_hostile_completions_score_zero_within_2s_and_leave_no_process():
    before = child_pids()
    timeout_s = 1.0
    pool = ScoringPool(math_verify_score, workers=2, timeout_s=timeout_s)
    pool.warm_up(("1", "1"))
    statuses = {}
    for name, text in hostile_cases().items():
        pool.warm_up(("1", "1"))  # replacements of killed workers are ready: time only this completion
        t0 = time.monotonic()
        (out,) = pool.map([("5", text)])
        elapsed = time.monotonic() - t0
        assert out.value == 0.0, name
        assert elapsed < 2.0, f"{name}: {elapsed:.2f}s"
        statuses[name] = out.status
    # the two that hang sympy are killed at the deadline; the others are rejected quickly
    assert statuses["power tower"] == "timeout" and statuses["3000 nested fracs"] == "timeout"
    assert set(statuses.values()) <= {"ok", "timeout"}
    assert len(child_pids() - before) == 2  # the two live workers (the killed ones were reaped: no zombies)
    pool.close()
    assert child_pids() - before == set()  # closed workers exited


@pytest.mark.slow
def test_scorer_counts_timeouts_and_errors_and_dumps_first_cases():
    class Task:
        name, sandboxed = "math", True
        score_fn = staticmethod(math_verify_score)

    cases = hostile_cases()
    texts = [cases["power tower"], cases["3000 nested fracs"], "\\boxed{5}", "\\boxed{4}"]
    report = score_texts(Task(), texts, gold="5", timeout_s=1.0, workers=2)
    assert report.rewards == [0.0, 0.0, 1.0, 0.0]
    assert report.timeouts == 2 and report.errors == 0
    assert [f["status"] for f in report.first_failures] == ["timeout", "timeout"]
    with pytest.raises(GuardTripped, match="2 of 4 rewards failed"):
        check_reward_failures(0, len(texts), report.timeouts, report.errors, 0.25)  # 2 > 0.25 * 4


def score_texts(task, texts: list[str], gold: str, timeout_s: float, workers: int):
    """Score one completion per text against `gold` with a fresh RewardScorer (closed afterwards)."""
    scorer = RewardScorer(task, timeout_s=timeout_s, workers=workers)
    try:
        return scorer.score([Rollout(i, 0, [], [1], t, "stop") for i, t in enumerate(texts)], {0: Prompt(0, "q", gold)})
    finally:
        scorer.close()


def _raises_or_nan(gold: str, completion: str) -> float:
    if completion == "raise":
        raise ValueError("bad reward")
    return {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}.get(completion, 1.0)


@pytest.mark.parametrize("sandboxed", [False, True])
def test_raising_and_non_finite_rewards_are_errors_scored_zero(sandboxed):
    class Task:
        name = "t"
        score_fn = staticmethod(_raises_or_nan)

    Task.sandboxed = sandboxed
    texts = ["ok", "raise", "nan", "inf", "-inf", "ok"]
    report = score_texts(Task(), texts, gold="g", timeout_s=5.0, workers=1)
    assert report.rewards == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]  # never NaN/inf: a group mean stays finite
    assert report.errors == 4 and report.timeouts == 0
    details = [f["detail"] for f in report.first_failures]
    assert "ValueError: bad reward" in details[0] and "non-finite reward nan" in details[1]


def test_failed_reward_ceiling():
    check_reward_failures(0, 100, 5, 5, 0.1)  # 10 of 100 is not more than 10%
    with pytest.raises(
        GuardTripped, match="11 of 100 rewards failed .timeouts 6, errors 5. > task.max_failed_reward_frac=0.1"
    ):
        check_reward_failures(3, 100, 6, 5, 0.1)


def test_answer_table_has_every_kind():
    kinds = {c["kind"] for c in TABLE}
    assert len(TABLE) >= 50
    assert {"fraction", "decimal", "interval", "radical", "degrees", "set", "malformed"} <= kinds
    assert {c["expected"] for c in TABLE} == {0.0, 1.0}


@pytest.mark.parametrize("case", TABLE, ids=[f"{c['kind']}:{c['gold']}|{c['pred'][:30]}" for c in TABLE])
def test_answer_table_main_thread(case):
    assert math_verify_score(case["gold"], case["pred"]) == case["expected"]


@pytest.mark.slow
def test_answer_table_in_the_worker_pool():
    with ScoringPool(math_verify_score, workers=2, timeout_s=10.0) as pool:
        got = [o.value for o in pool.map([(c["gold"], c["pred"]) for c in TABLE])]
    assert got == [c["expected"] for c in TABLE]
