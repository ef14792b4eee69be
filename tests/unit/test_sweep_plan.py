"""Sweep planning: override merging, stable run ids, generators, projections, dry run, rerun preparation.
Run: pytest tests/unit/test_sweep_plan.py"""

from pathlib import Path

import pytest

from two_grpo.cli import conf_dir
from two_grpo.config import ConfigError
from two_grpo.sweep import check_and_project, cmd_sweep, parse_args
from two_grpo.sweep_job import prepare_unfinished_member, run_member
from two_grpo.sweep_plan import load_preset, merge_overrides, plan_members, scaled_lr

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
    binary = members_of("matched")
    assert [m.name for m in binary] == ["sign2", "groupstd2", "batchstd2", "grpo16"]
    graded = members_of("matched", preset=["variant=graded"])
    assert all("task.arith.partial_credit=true" in m.overrides for m in graded)
    assert not any("task.arith.partial_credit=true" in m.overrides for m in binary)


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
