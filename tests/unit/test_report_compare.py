"""The report's paired comparisons on synthetic run dirs with a known per-prompt difference: verdict words,
Holm across comparisons, equal rollouts from the eval nearest the smaller total, equal-budget tables.
Run: pytest tests/unit/test_report_compare.py"""

import json

import numpy as np
import pytest

from two_grpo.study import report_compare as rc
from two_grpo.study.report import cmd_report
from two_grpo.study.report_data import collect


def write_run(d, *, seed, group_size, evals, prompts=40, k=4, delta=0.0, rng=None):
    """evals: [(rollouts, solve rate)]: every prompt solves round(k * (rate + prompt offset + delta)) of k."""
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(f"group_size: {group_size}\nprompts_per_minibatch: 8\nlr: 0.0001\nseed: {seed}\n")
    (d / "overrides.txt").write_text(f"group_size={group_size}\nseed={seed}\n")
    total = evals[-1][0]
    (d / "summary.json").write_text(json.dumps({"rollouts": total, "wallclock_s": total / 100, "time/eval_total_s": 0}))
    (d / "metrics.jsonl").write_text(json.dumps({"step": 1, "budget/rollouts_total": total}) + "\n")
    offsets = np.linspace(-0.25, 0.25, prompts)
    eval_lines, outcome_lines = [], []
    for i, (rollouts, rate) in enumerate(evals):
        solved = np.clip(np.round(k * (rate + offsets + delta + (rng.normal(0, 0.02) if rng else 0))), 0, k)
        for pid, c in enumerate(solved.astype(int)):
            rewards = [1.0] * c + [0.0] * (k - c)
            outcome_lines.append({"step": i, "rollouts": rollouts, "benchmark": "arith", "prompt_id": pid,
                                  "rewards": rewards})  # fmt: skip
        eval_lines.append({"step": i, "budget/optimizer_steps": i, "budget/rollouts_total": rollouts,
                           "budget/tokens_generated_total": 5 * rollouts, "time/train_wallclock_s": rollouts / 100,
                           f"eval/arith/mean@{k}": float(solved.mean() / k), f"eval/arith/pass@{k}": 0.5})  # fmt: skip
    (d / "eval.jsonl").write_text("\n".join(json.dumps(x) for x in eval_lines) + "\n")
    (d / "eval_outcomes.jsonl").write_text("\n".join(json.dumps(x) for x in outcome_lines) + "\n")


@pytest.fixture
def sweep(tmp_path):
    rng = np.random.default_rng(0)
    for s in range(6):
        # baseline G=16: 4 evals to 1024 rollouts; G=2: the same rates but 1/8 of the rollouts, +0.2 better
        write_run(tmp_path / f"g16_{s}", seed=s, group_size=16,
                  evals=[(0, 0.3), (128, 0.4), (512, 0.5), (1024, 0.55)], rng=rng)  # fmt: skip
        write_run(tmp_path / f"g2_{s}", seed=s, group_size=2, evals=[(0, 0.3), (64, 0.4), (128, 0.45)], rng=rng,
                  delta=0.0)  # fmt: skip
        write_run(tmp_path / f"g4_{s}", seed=s, group_size=4, evals=[(0, 0.3), (128, 0.4), (512, 0.5), (1024, 0.55)],
                  rng=rng, delta=0.005)  # fmt: skip
    return tmp_path


def test_verdicts_at_the_end_and_at_equal_rollouts(sweep):
    configs, _, _ = collect([sweep])
    by = {c.name: c for c in configs}
    verdicts, notes = rc.compare_all(configs, by["group_size=16"], "eval/arith/mean@4", min_effect=0.05)
    labels = [v.label for v in verdicts]
    assert labels == [
        "group_size=2 vs group_size=16 at the end of training (128 vs 1,024 rollouts)",
        "group_size=2 vs group_size=16 at equal rollouts (128)",
        "group_size=4 vs group_size=16 at equal rollouts",
    ]
    end, equal, same = verdicts
    # at the end: g2 at 0.45 vs g16 at 0.55 -> about -10 points, clearly worse
    assert end.comparison.diff == pytest.approx(-0.10, abs=0.02) and end.word == "worse"
    # at equal rollouts (128): g16's eval at 128 solves 0.40 vs g2's 0.45 -> about +5 points, better
    assert equal.comparison.diff == pytest.approx(0.05, abs=0.02) and equal.word == "better"
    assert same.word == "equivalent"  # +0.5 points, interval inside ±5
    raw = [v.comparison.p_value for v in verdicts]
    assert [v.holm_p for v in verdicts] == pytest.approx(__import__("two_grpo.study.stats").study.stats.holm(raw))
    assert "Holm p =" in end.line(0.05) and "→ worse" in end.line(0.05)
    assert notes == []


def test_unresolved_verdict_names_seeds_needed(sweep):
    configs, _, _ = collect([sweep])
    by = {c.name: c for c in configs}
    v, _ = rc.compare_all([by["group_size=16"], by["group_size=4"]], by["group_size=16"], "eval/arith/mean@4", 0.001)
    assert v[0].word == "no difference resolved" and v[0].seeds_to_resolve > 6
    assert f"~{v[0].seeds_to_resolve} seeds would resolve" in v[0].line(0.001)


def test_equal_budget_table_and_report(sweep):
    configs, _, _ = collect([sweep])
    by = {c.name: c for c in configs}
    head, rows, r_min, target = rc.equal_budget_rows(configs, by["group_size=16"], "eval/arith/mean@4", 0.7)
    assert r_min == 128
    assert target == pytest.approx(0.7 * np.mean([r.evals[-1]["eval/arith/mean@4"] for r in by["group_size=16"].runs]))
    g2 = next(r for r in rows if r[0] == "group_size=2")
    assert "6/6 seeds" in g2[2]  # g2 reaches 70% of ~0.55 = 0.385 before its end (0.40 at 64)
    out = sweep / "rep"
    assert cmd_report([str(sweep), "--baseline", "group_size=16", "--out", str(out), "--no-plots"]) == 0
    md = (out / "report.md").read_text()
    assert "## Verdicts" in md and "→ better" in md and "## Equal budgets" in md and "final pass@1 (%)" in md


def test_far_evals_are_not_compared(tmp_path):
    write_run(tmp_path / "a", seed=0, group_size=16, evals=[(0, 0.3), (1024, 0.5)])
    write_run(tmp_path / "b", seed=0, group_size=2, evals=[(0, 0.3), (128, 0.4)])
    configs, _, _ = collect([tmp_path])
    by = {c.name: c for c in configs}
    verdicts, notes = rc.compare_all(configs, by["group_size=16"], "eval/arith/mean@4", 0.05)
    assert len(verdicts) == 1 and "eval.every_rollouts" in notes[0]
