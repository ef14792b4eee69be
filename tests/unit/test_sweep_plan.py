"""Sweep planning: override merging, stable run ids, generators, projections, dry run, rerun preparation.
Run: pytest tests/unit/test_sweep_plan.py"""

from pathlib import Path

import pytest

from two_grpo.config.compose import conf_dir
from two_grpo.config.schema import ConfigError
from two_grpo.study.sweep import check_and_project, cmd_sweep, parse_args
from two_grpo.study.sweep_job import prepare_unfinished_member, run_member
from two_grpo.study.sweep_plan import load_preset, merge_overrides, plan_members, scaled_lr

PRESETS = sorted(p.stem for p in (Path(conf_dir()) / "sweep").glob("*.yaml"))


def members_of(name, cli=(), preset=(), seeds=(0,)):
    return plan_members(load_preset(conf_dir(), name, list(preset)), list(cli), list(seeds))


def test_merge_overrides_later_wins_per_key():
    assert merge_overrides(["a=1", "b=2"], ["a=3"], ["+c=4"]) == ["b=2", "a=3", "+c=4"]
    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        merge_overrides(["oops"])


def test_run_ids_are_stable_and_follow_the_overrides():
    a, b = members_of("paper"), members_of("paper")
    assert [m.run_id for m in a] == [m.run_id for m in b]
    assert [m.name for m in a] == ["grpo16", "grpo2"]
    c = members_of("paper", cli=["rollout.max_response_tokens=1024"])
    assert all(x.run_id != y.run_id for x, y in zip(a, c))  # a changed override is a new run
    assert all(m.overrides[-1] == "seed=0" and "rollout.max_response_tokens=1024" in m.overrides for m in c)
    s = members_of("paper", seeds=(0, 1, 2))
    assert len(s) == 6 and len({m.run_id for m in s}) == 6 and len({m.config_id for m in s}) == 2


def test_cli_override_replaces_the_preset_value():
    m = members_of("smoke", cli=["budget.max_epochs=1", "experiment=smoke"])[0]
    assert "budget.max_epochs=1" in m.overrides and "budget.max_epochs=2" not in m.overrides
    assert "experiment=smoke" in m.overrides and "experiment=sweep_cpu" not in m.overrides


def test_group_size_preset_holds_prompts_or_rollouts():
    held = {m.name: m.own for m in members_of("group_size")}
    assert held == {f"g{g}": [f"group_size={g}"] for g in (2, 4, 8, 16)}
    held = {m.name: m.own for m in members_of("group_size", preset=["hold=rollouts"])}
    assert held["g2"] == ["group_size=2", "prompts_per_minibatch=256"]  # 512 rollouts / G=2
    assert held["g16"] == ["group_size=16", "prompts_per_minibatch=32"]
    with pytest.raises(ConfigError, match="sweep.hold"):
        members_of("group_size", preset=["hold=tokens"])


def test_lr_scaling_rules_by_hand():
    assert scaled_lr("linear", 1e-6, 32, 256) == pytest.approx(8e-6)  # the paper's 2-GRPO lr
    assert scaled_lr("sqrt", 1e-6, 32, 256) == pytest.approx(2.8284e-6, rel=1e-4)  # sqrt(8) = 2.8284
    assert scaled_lr("constant", 1e-6, 32, 256) == 1e-6
    own = {m.name: m.own for m in members_of("batch_lr")}
    assert own["m256_linear"] == ["prompts_per_minibatch=256", "lr=8e-06"]
    assert own["m64_sqrt"] == ["prompts_per_minibatch=64", "lr=1.414e-06"]
    assert "m32_linear" not in own and len(own) == 10  # 4 constant + 3 linear + 3 sqrt


def test_matched_members_and_graded_variant():
    assert [m.run_id for m in members_of("matched")] == [m.run_id for m in members_of("table4")]  # the alias
    binary = members_of("table4")
    assert [m.name for m in binary] == ["sign2", "groupstd2", "batchstd2", "grpo16"]
    graded = members_of("table4", preset=["variant=graded"])
    assert all("task.arith.partial_credit=true" in m.overrides for m in graded)
    assert not any("task.arith.partial_credit=true" in m.overrides for m in binary)


def _settings(cfg):
    return (cfg.group_size, cfg.prompts_per_minibatch, cfg.prompts_per_rollout, cfg.lr, cfg.budget, cfg.eval)


@pytest.mark.parametrize("scale", ["paper", "cpu"])
def test_critique_changes_only_the_advantage_and_then_only_g(scale, compose):
    members = {m.name: compose(m.overrides) for m in members_of("critique", preset=[f"scale={scale}"])}
    assert list(members) == ["sign2", "groupstd2", "batchstd2", "drgrpo2", "pairwise2", "grpo16_same"]
    sign = members["sign2"]
    assert sign.group_size == 2
    if scale == "paper":  # 2-GRPO's setting
        assert (sign.prompts_per_minibatch, sign.lr) == (256, 8e-6)
    else:  # sweep_cpu's 16-GRPO (8 prompts, 1e-4) x 8 prompts and x 8 lr
        assert (sign.prompts_per_minibatch, sign.prompts_per_rollout, sign.lr) == (64, 64, 8e-4)
    for name in ("groupstd2", "batchstd2", "drgrpo2", "pairwise2"):
        other = members[name]
        assert _settings(other) == _settings(sign) and other.algo != sign.algo
        assert (other.algo.clip_low, other.algo.loss_agg) == (sign.algo.clip_low, sign.algo.loss_agg)
    pair = members["pairwise2"].algo  # the DPO form: the sign advantage orders each pair, only the loss differs
    assert (pair.loss, pair.advantage) == ("pairwise", "sign") and sign.algo.loss == "grpo"
    assert members["batchstd2"].algo.batch_std_of == "rewards" and members["groupstd2"].algo.adv_std == "sample"
    g16 = members["grpo16_same"]
    g16.group_size = 2
    assert _settings(g16) == _settings(members["groupstd2"]) and g16.algo == members["groupstd2"].algo


@pytest.mark.parametrize("scale", ["paper", "cpu"])
def test_critique_dry_run_prints_the_advantages_on_a_g2_example(scale, capsys, tmp_path):
    assert cmd_sweep(["sweep=critique", f"sweep.scale={scale}", "dry_run=true", f"dir={tmp_path / 'c'}"]) == 0
    out = capsys.readouterr().out
    # [1,0],[1,1],[0.5,0]: sign +-1; sample std +-0.7071; rewards std 0.4916 -> +-1.0171, +-0.5085; dr +-0.5, 0.25
    for cell in ("+1.0000, -1.0000", "+0.7071, -0.7071", "+1.0171, -1.0171", "+0.5085, -0.5085", "+0.2500, -0.2500"):
        assert cell in out, cell


def test_matched_rollouts_stops_every_member_at_the_baselines_total():
    from two_grpo.study.sweep_plan import budget_overrides

    preset = load_preset(conf_dir(), "paper", ["budget=matched_rollouts"])
    members = plan_members(preset, [], [0])
    proj = check_and_project(members, preset.assume_train_prompts)
    extra = budget_overrides(preset, members, proj, [])
    total = 147 * 512 * 16  # grpo16's projection at 10 epochs
    for name in ("grpo16", "grpo2"):
        assert extra[name] == [f"budget.max_rollouts={total}", "budget.max_epochs=0", "budget.max_steps=0"]
    matched = plan_members(preset, [], [0], extra)
    proj2 = check_and_project(matched, preset.assume_train_prompts)
    assert [proj2[m.run_id]["rollouts"] for m in matched] == [total, total]  # grpo2 runs 8x the epochs
    assert {m.run_id for m in matched}.isdisjoint({m.run_id for m in members})  # new run dirs
    with pytest.raises(ConfigError, match="budget="):
        budget_overrides(load_preset(conf_dir(), "paper", ["budget=tokens"]), members, proj, [])


def test_study_members_share_one_eval_cadence_in_rollouts():
    from two_grpo.study.sweep_plan import budget_overrides

    preset = load_preset(conf_dir(), "study", [])
    members = plan_members(preset, [], [0])
    proj = check_and_project(members, 0)
    extra = budget_overrides(preset, members, proj, [])
    # smallest member: G=2 at 2 epochs of 128 prompts = 512 rollouts; eval_points 2 -> every 256 rollouts
    assert extra == {"*": ["eval.every_rollouts=256"]}
    assert len(preset.seeds) >= 8 and all(len(p) == 2 for p in preset.comparisons)
    assert budget_overrides(preset, members, proj, ["eval.every_rollouts=100"]) == {}  # the command line wins


def test_paper_2grpo_member_is_the_paper_2grpo_experiment(compose):
    grpo2 = members_of("paper")[1]
    a, b = compose(grpo2.overrides), compose(["experiment=paper_2grpo"])
    a.experiment_name = b.experiment_name
    assert a == b


def test_paper_dry_run_projects_exactly_one_eighth_of_the_rollouts():
    members = members_of("paper")
    proj = check_and_project(members, load_preset(conf_dir(), "paper", []).assume_train_prompts)
    g16, g2 = (proj[m.run_id] for m in members)
    assert g16["train_prompts"] == 7500
    # 10 epochs x 7500 prompts / 512 per rollout batch -> 147 batches; x 512 x G
    assert g16["rollouts"] == 147 * 512 * 16 and g2["rollouts"] == 147 * 512 * 2
    assert g2["rollouts"] / g16["rollouts"] == 0.125
    assert (g16["steps"], g2["steps"]) == (147 * 16, 147 * 2)  # 512/32 vs 512/256 updates per batch


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_dry_runs(name, capsys, tmp_path):
    assert cmd_sweep([f"sweep={name}", "dry_run=true", f"dir={tmp_path / 'sw'}"]) == 0
    out = capsys.readouterr().out
    assert "opt. steps" in out and "new" in out
    assert not (tmp_path / "sw").exists()  # a dry run writes nothing


def test_paper_dry_run_prints_twelve_and_a_half_percent(capsys, tmp_path):
    assert cmd_sweep(["sweep=paper", "dry_run=true", f"dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "12.5%" in out and "100.0%" in out and "lr=8e-6" in out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["sweep=nope"], "no such preset; choose one of"),
        (["launcher=basic"], "basic launcher runs members inside one process"),
        (["seeds=3"], "seeds=3 must be a list"),
        (["grop_size=2"], "did you mean 'group_size'"),
        (["prompts_per_minibatch=3"], "member g16-"),
    ],
)
def test_bad_sweep_input_is_one_line_exit_2(argv, needle, capsys):
    assert cmd_sweep([*argv, "dry_run=true"]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_parse_args_routes_keys():
    keys, preset, hydra, members = parse_args(
        ["sweep=matched", "seeds=[0,1]", "sweep.variant=graded", "hydra.launcher.partition=gpu", "lr=1e-5"]
    )
    assert keys["sweep"] == "matched" and keys["seeds"] == [0, 1]
    assert preset == ["variant=graded"] and hydra == ["hydra.launcher.partition=gpu"] and members == ["lr=1e-5"]
    _, preset, _, members = parse_args(["budget=matched_rollouts", "budget=rollouts"])
    assert preset == ["budget=matched_rollouts"] and members == ["budget=rollouts"]  # the config group passes on


def test_unfinished_member_is_moved_aside_whole(tmp_path):
    d = tmp_path / "m"
    (d / "rollouts").mkdir(parents=True)
    (d / "metrics.jsonl").write_text("{}\n")
    (d / "config.yaml").write_text("x: 1\n")
    assert prepare_unfinished_member(d) == []
    assert sorted(p.name for p in d.iterdir()) == ["attempts"]
    assert sorted(p.name for p in (d / "attempts" / "1").iterdir()) == ["config.yaml", "metrics.jsonl", "rollouts"]
    (d / "metrics.jsonl").write_text("{}\n")
    prepare_unfinished_member(d)
    assert (d / "attempts" / "2" / "metrics.jsonl").is_file()
    fresh = tmp_path / "fresh"
    assert prepare_unfinished_member(fresh) == [] and not fresh.exists()


def test_a_failing_member_returns_its_exit_code_instead_of_raising(tmp_path):
    import json
    from types import SimpleNamespace

    plan = {"members": [{"run_id": "bad-s0", "run_dir": str(tmp_path / "bad-s0"),
                         "command": ["two-grpo", "train", "no_such_key=1"]}]}  # fmt: skip
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    out = run_member(SimpleNamespace(member="bad-s0", plan=str(tmp_path / "plan.json")))
    assert out["rc"] == 2 and "unknown config key" in (tmp_path / "bad-s0" / "train.log").read_text()
    out = run_member(SimpleNamespace(member="missing", plan=str(tmp_path / "plan.json")))
    assert out["rc"] == -1 and "StopIteration" in out["error"]


def test_parallel_members_split_the_cores_unless_the_user_set_threads():
    from two_grpo.study.sweep_job import member_threads_env

    local = "submitit_local"
    assert member_threads_env({}, 1, 2, local) == {}  # one member at a time: torch's default (all cores)
    assert member_threads_env({}, 2, 2, local)["OMP_NUM_THREADS"] == "1"
    assert member_threads_env({}, 2, 16, local)["OMP_NUM_THREADS"] == "8"
    assert member_threads_env({}, 3, 2, local)["OMP_NUM_THREADS"] == "1"  # never 0
    assert member_threads_env({"OMP_NUM_THREADS": "2"}, 2, 2, local)["OMP_NUM_THREADS"] == "2"  # the user's wins
    assert member_threads_env({}, 8, 64, "submitit_slurm") == {}  # Slurm: each member has its own allocation


def test_omp_num_threads_sets_torchs_intra_op_threads_in_a_member_process():
    import os
    import subprocess
    import sys

    from two_grpo.study.sweep_job import member_threads_env

    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env = member_threads_env(env, 2, 2, "submitit_local")
    out = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env, capture_output=True, text=True
    )
    assert out.stdout.strip() == "1"


def test_a_configurations_seeds_share_one_composition(monkeypatch):
    """check_and_project composes each configuration once, not once per seed (the study's dry run composed 64
    members twice), and every seed still gets the projection its own composition would give."""
    import two_grpo.config.compose as compose_mod

    preset = load_preset(conf_dir(), "smoke", [])
    members = plan_members(preset, [], [0, 1])
    calls = []
    real = compose_mod.compose
    monkeypatch.setattr(compose_mod, "compose", lambda overrides: calls.append(overrides) or real(overrides))
    proj = check_and_project(members, preset.assume_train_prompts)
    names = {m.name for m in members}
    assert len(members) == 2 * len(names) and len(calls) == len(names)
    assert set(proj) == {m.run_id for m in members}
    for m in members:  # each seed alone (its own composition) projects the same as the shared one
        assert check_and_project([m], preset.assume_train_prompts)[m.run_id] == proj[m.run_id], m.run_id
    s0, s1 = [m.run_id for m in members if m.name == members[0].name]
    assert proj[s0] == proj[s1] and proj[s0] is not proj[s1]  # copies: editing one leaves the other
