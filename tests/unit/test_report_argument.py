"""The paper's argument in the report (report_argument.py) on synthetic run dirs with hand-checked numbers:
pytest tests/unit/test_report_argument.py"""

from __future__ import annotations

import json
import math

import pytest

from two_grpo.study import report_argument as ra
from two_grpo.study.report import cmd_report
from two_grpo.study.report_data import collect

T2 = 4.302653  # exact t(0.975, 2)


def write_run(d, *, seed, group_size, prompts, rollouts, noise=None, resampled=(), zero_var=0.5, resample=False):
    """noise: [(trace_cov, grad_sq), ...] one per step; resampled: rollout/resampled_rollouts per rollout batch."""
    d.mkdir(parents=True)
    algo = "  resample_zero_var: true\n" if resample else ""
    (d / "config.yaml").write_text(
        f"group_size: {group_size}\nprompts_per_rollout: {prompts}\nprompts_per_minibatch: {prompts}\nlr: 0.0001\n"
        f"seed: {seed}\nbudget:\n  max_steps: 2\nalgo:\n  advantage: grpo\n{algo}"
    )
    (d / "summary.json").write_text(json.dumps({"rollouts": rollouts, "tokens_generated": rollouts,
                                                "optimizer_steps": 2, "wallclock_s": 1.0}))  # fmt: skip
    steps = max(len(noise or []), len(resampled), 2)
    lines = []
    for i in range(steps):
        m = {"step": i + 1, "rollout_batch": i, "rollout/zero_var_group_frac": zero_var,
             "budget/rollouts_total": (i + 1) * rollouts // steps, "rollout/reward_mean": 0.5}  # fmt: skip
        if noise:
            m["grad_noise/trace_cov"], m["grad_noise/grad_sq"] = noise[i][:2]
            if len(noise[i]) > 2:  # token_mean: the loss unit is a token
                m["grad_noise/tokens_per_rollout"] = noise[i][2]
        if resampled:
            m["rollout/resampled_rollouts"] = resampled[i]
        lines.append(m)
    (d / "metrics.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")


def sweep_dir(tmp_path, members):
    """A sweep dir (plan.json) with members {name: [(seed, kwargs), ...]}."""
    plan = {"baseline": "g16", "members": [], "comparisons": [["g2_rs", "g2"]]}
    for name, runs in members.items():
        for seed, kw in runs:
            run_id = f"{name}-s{seed}"
            write_run(tmp_path / run_id, seed=seed, **kw)
            plan["members"].append({"run_id": run_id, "run_dir": str(tmp_path / run_id), "config_id": name,
                                    "name": name, "seed": seed})  # fmt: skip
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    return tmp_path


def noise_members():
    # g2: per-seed means trace 8, 8, 8.8 over grad_sq mean 1 -> B_simple 8, 8, 8.8 (mean of per-step ratios would
    # be (6/0.5 + 10/1.5)/2 = 9.33 for seed 0: the ratio of means is what is reported)
    g2 = {0: [(6.0, 0.5), (10.0, 1.5)], 1: [(8.0, 1.0), (8.0, 1.0)], 2: [(8.8, 1.0), (8.8, 1.0)]}
    g16 = {s: [(4.0, 2.0), (4.0, 2.0)] for s in range(3)}  # B_simple 2 every seed
    same = {s: [(5.0, 1.0, 4.0), (5.0, 1.0, 6.0)] for s in range(3)}  # 5 tokens / 5 tokens per rollout: B_simple 1
    return {
        "g16": [(s, dict(group_size=16, prompts=8, rollouts=2048, noise=g16[s])) for s in range(3)],
        "g2": [(s, dict(group_size=2, prompts=64, rollouts=256, noise=g2[s])) for s in range(3)],
        "g16_same": [(s, dict(group_size=16, prompts=64, rollouts=2048, noise=same[s])) for s in range(3)],
    }


def test_run_noise_is_a_ratio_of_means_with_snr_per_minibatch(tmp_path):
    configs, _, _ = collect([sweep_dir(tmp_path, noise_members())])
    rows = {r["config"]: r for r in ra.noise_rows(configs)}
    g2 = rows["g2"]
    assert (g2["G"], g2["prompts"], g2["rollouts"]) == (2, 64, 128)
    assert g2["seeds"][0]["b_simple"] == pytest.approx(8.0)
    assert g2["seeds"][0]["snr"] == pytest.approx(128 / 8)
    m, lo, hi = g2["b_simple"]  # 8, 8, 8.8: mean 8.2667, sd 0.4619
    assert m == pytest.approx(8.266667) and hi - m == pytest.approx(T2 * 0.461880 / math.sqrt(3), rel=1e-4)
    assert rows["g16"]["trace_cov"][0] == pytest.approx(4.0) and math.isnan(rows["g16"]["ref_cos"][0])
    assert rows["g16_same"]["b_simple"][0] == pytest.approx(1.0) and rows["g16_same"]["snr"][0] == pytest.approx(1024)
    assert rows["g16_same"]["trace_cov"][0] == pytest.approx(1.0)  # 5 per token / 5 tokens per rollout
    assert {k: [r["config"] for r in v] for k, v in ra.series(list(rows.values()), "rollouts").items()} == {
        128: ["g2", "g16"]
    }
    assert {k: [r["config"] for r in v] for k, v in ra.series(list(rows.values()), "prompts").items()} == {
        64: ["g2", "g16_same"]
    }


def test_ratio_interval_by_hand():
    ratio, lo, hi, n = ra.ratio_interval({0: 4.0, 1: 8.0, 2: 16.0}, {0: 2.0, 1: 2.0, 2: 2.0, 3: 9.0})
    # log-ratios ln2 * (1, 2, 3): mean 2 ln2 -> 4; half-width t(2) * ln2 * 1 / sqrt(3) = 1.72187
    assert n == 3 and ratio == pytest.approx(4.0)
    assert lo == pytest.approx(4 * math.exp(-1.72187), rel=1e-4) and hi == pytest.approx(
        4 * math.exp(1.72187), rel=1e-4
    )
    assert ra.ratio_interval({0: -1.0, 1: 2.0}, {0: 1.0, 1: 1.0})[3] == 1  # a seed without B_simple is left out


def test_noise_verdict_prefers_matched_rollouts_and_says_higher(tmp_path):
    configs, _, _ = collect([sweep_dir(tmp_path, noise_members())])
    line = ra.noise_verdict(ra.noise_rows(configs))
    # per-seed ratios 4, 4, 4.4 against g16 (not g16_same: matched rollouts first): geometric mean 4 * 1.1^(1/3)
    assert f"{4 * 1.1 ** (1 / 3):.2f}×" in line and "(g16)" in line and "matched 128 rollouts" in line
    assert "→ higher; relative to the signal" in line and line.endswith("3 seed(s) → higher.")  # same ratios
    flat = {"g2": noise_members()["g2"], "g16": [(s, dict(group_size=16, prompts=8, rollouts=2048,
            noise=[(8.0 + s, 1.0), (8.0 + s, 1.0)])) for s in range(3)]}  # fmt: skip
    configs, _, _ = collect([sweep_dir(tmp_path / "flat", flat)])
    line = ra.noise_verdict(ra.noise_rows(configs))  # tr ratios 1, 8/9, 8.8/10: the interval covers 1
    assert "→ no difference resolved; " in line and line.endswith("→ no difference resolved.")
    swamped = {"g2": [(s, dict(group_size=2, prompts=64, rollouts=256, noise=[(8.0, -0.5), (8.0, 0.1)]))
                      for s in range(3)], "g16": flat["g16"]}  # fmt: skip
    configs, _, _ = collect([sweep_dir(tmp_path / "swamped", swamped)])
    line = ra.noise_verdict(ra.noise_rows(configs))
    assert "tr(Σ) (g2), is" in line and line.endswith("(noise swamps the signal at this mini-batch size).")
    assert ra.noise_verdict([]).startswith("No gradient-noise verdict")


def test_resampling_rows_share_and_saving_given_back(tmp_path):
    members = {
        "g16": [(s, dict(group_size=16, prompts=8, rollouts=2048)) for s in range(3)],
        "g2": [(s, dict(group_size=2, prompts=64, rollouts=256)) for s in range(3)],
        "g2_rs": [(s, dict(group_size=2, prompts=64, rollouts=256 + x, resampled=(x // 2, x - x // 2), resample=True))
                  for s, x in enumerate((44, 64, 54))],
    }  # fmt: skip
    configs, _, _ = collect([sweep_dir(tmp_path, members)])
    by = {c.name: c for c in configs}
    (row,) = ra.resample_rows(configs, by["g16"], [(by["g2_rs"], by["g2"])])
    assert (row["partner"], row["big"]) == ("g2", "g16")
    assert row["resampled"][0] == pytest.approx(54.0)
    assert row["share"][0] == pytest.approx((44 / 300 + 64 / 320 + 54 / 310) / 3)
    # given back: (44, 64, 54) / (2048 - 256): mean 54 / 1792, sd 10 / 1792
    m, lo, hi = row["give_back"]
    assert m == pytest.approx(54 / 1792) and hi - m == pytest.approx(T2 * 10 / 1792 / math.sqrt(3))
    md = "\n".join(ra.resample_section(configs, by["g16"]))  # partner found by setting without `pairs`
    assert "| g2_rs | g2 | g16 |" in md and "3.0% [" in md


def test_probe_check_pools_the_first_batch_over_seeds(tmp_path):
    members = {
        "g2": [(s, dict(group_size=2, prompts=64, rollouts=256, zero_var=z)) for s, z in enumerate((0.5, 0.625))],
        "g2_rs": [(0, dict(group_size=2, prompts=64, rollouts=300, zero_var=0.0, resample=True))],
        "g8": [(0, dict(group_size=8, prompts=64, rollouts=256))],
    }
    d = sweep_dir(tmp_path, members)
    table = [dict(group_size=g, signal_frac=f, signal_frac_se=0.02, grad_rollouts_per_1k=0.0, signal_prompts_per_1k=0.0,
                  adv_abs_mean=0.0, s_per_rollout=0.0, grad_rollouts_per_s=0.0, plug_in=False)
             for g, f in ((2, 0.4), (16, 0.9))]  # fmt: skip
    (d / "probe").mkdir()
    (d / "probe" / "probe.json").write_text(json.dumps({"table": table, "prompts": 64, "samples": 16,
                                                        "solve_rate": 0.3, "recommended_group_size": 2}))  # fmt: skip
    configs, _, _ = collect([d])
    (row,) = ra.probe_rows(configs, json.loads((d / "probe" / "probe.json").read_text()))  # g8: not probed
    # 128 groups, observed (0.5 + 0.625) / 2 = 0.5625 vs predicted 0.6: se = sqrt(0.24 / 128 + 0.02^2) = 0.04770, z = -0.786
    assert (row["config"], row["runs"], row["groups"]) == ("g2", 2, 128)
    assert row["observed"] == pytest.approx(0.5625) and row["predicted"] == pytest.approx(0.6)
    assert row["z"] == pytest.approx(-0.0375 / math.sqrt(0.24 / 128 + 0.0004), rel=1e-6)
    md = "\n".join(ra.probe_section(configs, [d]))
    assert "| g2 | 2 | 2 | 128 | 60.0% | 56.2% | -0.79 | yes |" in md


def test_report_gains_the_noise_section_and_plot(tmp_path, capsys):
    d = sweep_dir(tmp_path, noise_members())
    assert cmd_report([str(d)]) == 0
    md = (d / "report" / "report.md").read_text()
    assert "## Gradient noise against G" in md and "→ higher; " in md and "![gradient_noise](gradient_noise.png)" in md
    assert (d / "report" / "gradient_noise.png").stat().st_size > 0
    assert "→ higher; " in capsys.readouterr().out
