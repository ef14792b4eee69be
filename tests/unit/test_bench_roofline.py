"""scripts/bench.py `roofline`: utilisation = model FLOPs per second over the peak, by hand; the `executed` column
counts each group's prompt once only for a run whose learner shared it (bench_jobs reports
`config.schema.shares_prompts`, the predicate the torch learner builds its layout from)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load(name: str):
    sys.path.insert(0, str(SCRIPTS))
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def system(rollout_s: float, learner_s: float, step_s: float, tokens: float, **extra):
    learner_key = "learner+rest" if extra.pop("trl", False) else "learner"
    return {"phase_s": {"rollout": rollout_s, learner_key: learner_s}, "step_s": step_s, "gen_tokens_per_step": tokens,
            **extra}  # fmt: skip


def test_utilisation_by_hand_and_executed_flops_follow_the_run():
    bench = load("bench")
    # per step: 100 generated tokens; learner 6e9 FLOPs (update), 3e9 with shared prompts; sampler 1e9; peak 1e11
    limit = {"gen_s": 0.02, "learn_s": 0.12, "sum_s": 0.14, "gen_tokens_per_step": 100,
             "learner_flops_per_step": 6e9, "learner_flops_shared_per_step": 3e9, "sampler_flops_per_step": 1e9}  # fmt: skip
    row = {
        "limit": limit,
        "ours": system(0.01, 0.05, 0.07, 100, shares_prompts=True),
        "compiled": system(0.01, 0.04, 0.06, 100, shares_prompts=False),  # e.g. run with shared_prefix=false
        "trl": system(0.04, 0.20, 0.25, 50, trl=True, shares_prompts=False),
    }
    out = bench.roofline(row, {"cpu_fp32": {"peak_flops_per_s": 1e11}})
    assert out["hardware"] == pytest.approx({"gen_s": 0.01, "learn_s": 0.06, "step_s": 0.07})
    ours, compiled, trl, lim = out["ours"], out["compiled"], out["trl"], out["limit"]
    assert ours["learner_util"] == pytest.approx(6e9 / 0.05 / 1e11)  # 1.2: the update's FLOPs, 120% of peak
    assert ours["learner_util_executed"] == pytest.approx(3e9 / 0.05 / 1e11)  # 0.6: what it ran
    assert compiled["learner_util_executed"] == pytest.approx(compiled["learner_util"]) == pytest.approx(1.5)
    assert trl["learner_util"] == trl["learner_util_executed"] == pytest.approx(6e9 * 0.5 / 0.20 / 1e11)  # 0.15
    assert lim["learner_util_executed"] == pytest.approx(0.5)
    assert ours["sampler_util"] == pytest.approx(1.0) and trl["sampler_util"] == pytest.approx(0.125)
    assert ours["step_util"] == pytest.approx(7e9 / 0.07 / 1e11)
    assert trl["step_over_hardware"] == pytest.approx((0.25 / 50) / (0.07 / 100))  # 7.14x per generated token
    old = {**row, "ours": system(0.01, 0.05, 0.07, 100)}  # a result without the key: counted as not shared
    assert bench.roofline(old, {"cpu_fp32": {"peak_flops_per_s": 1e11}})["ours"][
        "learner_util_executed"
    ] == pytest.approx(1.2)


def test_shares_prompts_reads_the_learner_config(compose):
    from two_grpo.config.schema import shares_prompts

    assert shares_prompts(compose([]).learner)  # the torch learner's default: packed rows, shared prompts
    assert not shares_prompts(compose(["learner.shared_prefix=false"]).learner)
    assert not shares_prompts(compose(["learner.padding_free=false"]).learner)
    assert not shares_prompts(compose(["learner=zero2"]).learner)
