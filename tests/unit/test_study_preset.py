"""sweep=study carries the paper's argument: the pairwise and resampling members, paired with g2, and gradient
noise on the members the report plots against G: pytest tests/unit/test_study_preset.py"""

from __future__ import annotations

import pytest

from two_grpo.config.compose import compose, conf_dir, to_train_config
from two_grpo.study.sweep_plan import load_preset, plan_members


@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_study_members_of_the_argument(scale):
    preset = load_preset(conf_dir(), "study", [f"scale={scale}"])
    members = {m.name: to_train_config(compose(m.overrides)) for m in plan_members(preset, [], [0])}
    g2, pw, rs = members["g2"], members["g2_pairwise"], members["g2_rs"]
    for m in (pw, rs):  # g2's setting: G, prompts per mini-batch, lr
        assert (m.group_size, m.prompts_per_minibatch, m.lr) == (g2.group_size, g2.prompts_per_minibatch, g2.lr)
    assert pw.algo.loss == "pairwise" and g2.algo.loss == "grpo" and not g2.algo.resample_zero_var
    assert rs.algo.resample_zero_var and rs.algo.adv_std == g2.algo.adv_std == "sample"
    noisy = sorted(n for n, m in members.items() if m.diagnostics.grad_noise)
    assert noisy == ["g16", "g16_same", "g2"]
    # the report's series: g2 and g16 at matched rollouts per mini-batch, g2 and g16_same at matched prompts
    rollouts = {n: members[n].prompts_per_minibatch * members[n].group_size for n in noisy}
    if scale == "cpu":
        assert rollouts["g2"] == rollouts["g16"] == 128
    assert members["g16_same"].prompts_per_minibatch == g2.prompts_per_minibatch
    assert ["g2_pairwise", "g2"] in preset.comparisons and ["g2_rs", "g2"] in preset.comparisons


@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_g2_rs_takes_g2s_optimizer_steps(scale):
    """Resampling draws its extra prompts from the run's sampler, so at equal epochs g2_rs would take fewer updates;
    it stops at g2's projected optimizer steps instead (paper: MATH's 7,500 training prompts)."""
    from two_grpo.study.sweep import check_and_project

    preset = load_preset(conf_dir(), "study", [f"scale={scale}"])
    members = [m for m in plan_members(preset, [], [0]) if m.name in ("g2", "g2_rs")]
    proj = {m.name: p for m, p in zip(members, check_and_project(members, 7500).values())}
    assert proj["g2_rs"]["steps"] == proj["g2"]["steps"] == {"cpu": 4, "paper": 294}[scale]
