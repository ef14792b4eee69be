"""Report aggregation: CI math with hand-checked numbers, per-configuration rows from run dirs, ratios.
Run: pytest tests/unit/test_report_data.py"""

import json
import math

import pytest

from two_grpo.study.report import build_tables, cmd_report
from two_grpo.study.report_data import aggregate, collect, eval_metric_names, mean_ci95, ratio_sentence, ratios


def test_mean_ci95_by_hand():
    m, h = mean_ci95([1.0, 2.0, 3.0])
    assert m == 2.0 and h == pytest.approx(4.302653 * 1.0 / math.sqrt(3))  # s = 1, exact t(0.975, 2) = 4.302653
    m, h = mean_ci95([0.5, 0.7])
    assert m == pytest.approx(0.6) and h == pytest.approx(1.270620)  # s = 0.14142, t(1) = 12.706205, /sqrt 2
    m, h = mean_ci95([5.0])
    assert m == 5.0 and math.isnan(h)
    assert mean_ci95([4.0] * 40) == (4.0, 0.0)  # sd 0


def write_run(d, *, seed, group_size, rollouts, train_s, evals, zero_var):
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(
        f"group_size: {group_size}\nprompts_per_minibatch: 8\nlr: 0.0001\nseed: {seed}\nalgo:\n  advantage: grpo\n"
    )
    (d / "overrides.txt").write_text(f"group_size={group_size}\nseed={seed}\nhydra.run.dir={d}\n")
    summary = {
        "rollouts": rollouts,
        "tokens_generated": rollouts * 5,
        "optimizer_steps": 4,
        "wallclock_s": train_s + 1.0,
    }
    summary.update({f"time/{p}_total_s": 0.0 for p in ("rollout", "reward", "logprob", "learner", "sync")})
    summary["time/eval_total_s"] = 1.0
    (d / "summary.json").write_text(json.dumps(summary))
    lines = [
        {"step": s, "rollout_batch": s - 1, "rollout/zero_var_group_frac": zero_var, "rollout/reward_mean": 0.5,
         "rollout/zero_var_pred_batch_p": 0.5, "rollout/zero_adv_frac": zero_var, "adv/abs_mean": 0.5,
         "adv/abs_mean_nonzero": 1.0, "budget/rollouts_total": s * rollouts // 4}
        for s in range(1, 5)
    ]  # fmt: skip
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    rows = [
        {"step": i * 2, "budget/optimizer_steps": i * 2, "budget/rollouts_total": i * rollouts // 2,
         "time/train_wallclock_s": i * train_s / 2, "eval/toy_arith/mean@4": v, "eval/toy_arith/pass@4": v,
         f"eval/toy_arith/zero_var_pred_g{group_size}": 0.4}
        for i, v in enumerate(evals)
    ]  # fmt: skip
    (d / "eval.jsonl").write_text("\n".join(json.dumps(x) for x in rows) + "\n")


@pytest.fixture
def runs(tmp_path):
    write_run(tmp_path / "a0", seed=0, group_size=16, rollouts=800, train_s=40.0, evals=[0.1, 0.6, 0.5], zero_var=0.2)
    write_run(tmp_path / "a1", seed=1, group_size=16, rollouts=800, train_s=40.0, evals=[0.1, 0.5, 0.7], zero_var=0.4)
    write_run(tmp_path / "b0", seed=0, group_size=2, rollouts=100, train_s=10.0, evals=[0.1, 0.3, 0.6], zero_var=0.6)
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "metrics.jsonl").write_text("")
    return tmp_path


def test_runs_that_differ_only_in_seed_form_one_row(runs):
    configs, _, unfinished = collect([runs])
    assert [c.name for c in configs] == ["group_size=16", "group_size=2"]
    assert [len(c.runs) for c in configs] == [2, 1] and unfinished == [runs / "unfinished"]
    metrics = eval_metric_names(configs)
    assert metrics == ["eval/toy_arith/mean@4", "eval/toy_arith/pass@4"]
    rows = aggregate(configs, metrics)
    g16, g2 = rows
    final, h = g16["final eval/toy_arith/mean@4"]  # finals 0.5 and 0.7: mean 0.6, s 0.1414 -> 12.706*0.1 = 1.2706
    assert final == pytest.approx(0.6) and h == pytest.approx(1.270620)
    assert g16["best eval/toy_arith/mean@4"][0] == pytest.approx(0.65)  # best 0.6 and 0.7
    assert g16["zero_var_obs"][0] == pytest.approx(0.3)
    assert g16["zero_var_pred_prompts"][0] == pytest.approx(0.4)
    assert g16["train_s"][0] == pytest.approx(40.0)  # wall-clock minus eval
    r = ratios(g2, g16, "eval/toy_arith/mean@4")
    assert r["rollouts_pct"] == pytest.approx(12.5) and r["time_pct"] == pytest.approx(25.0)
    assert r["metric_pct"] == pytest.approx(100.0)  # 0.6 vs 0.6
    assert ratio_sentence(r, "mean@4") == "12.5% of rollouts, 25% of time, 100% of mean@4"
    head, main, sig_head, sig = build_tables(rows, g16, metrics, "eval/toy_arith/mean@4")
    # t interval 0.6 ± 1.2706 clipped to the metric's range 0..1
    assert main[0][head.index("final toy_arith/mean@4 (%)")] == "60.0 [0.0, 100.0]"
    # evals after step 0: seed 0 (0.6, 0.5) -> 0.55, seed 1 (0.5, 0.7) -> 0.6; mean 0.575
    assert main[0][head.index("mean of last 3 evals (%)")].startswith("57.5 [")
    assert "best" not in " ".join(head)
    assert main[1][-1].startswith("12.5% of rollouts")
    assert sig[1][sig_head.index("zero-var groups observed")] == "60.0%"


def test_report_writes_table_csv_and_plots(runs, capsys):
    out = runs / "rep"
    assert cmd_report([str(runs), "--baseline", "group_size=16", "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "| group_size=2 |" in md and "12.5% of rollouts" in md and "Signal accounting" in md
    csv_lines = (out / "report.csv").read_text().splitlines()
    assert len(csv_lines) == 3 and "rollouts_pct vs baseline" in csv_lines[0]
    for name in ("eval_vs_rollouts", "eval_vs_wallclock", "eval_vs_steps", "train_reward"):
        assert (out / f"{name}.png").stat().st_size > 10_000, name
    assert "configurations" in capsys.readouterr().out


def test_report_bad_baseline_is_one_line_exit_2(runs, capsys):
    assert cmd_report([str(runs), "--baseline", "nope", "--no-plots", "--out", str(runs / "r")]) == 2
    assert "no such configuration" in capsys.readouterr().err
