"""The CLI conventions TRL / verl / Hydra users expect (issue 16): peer names in unknown-key errors, `--help` that
explains, `explain KEY`, `--version`, Hydra flags refused in one line, `-m` on the sweep machinery, no
BrokenPipeError when the output is cut."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from two_grpo.cli import main

PY = [sys.executable, "-m", "two_grpo.cli"]


@pytest.mark.parametrize(
    "override,ours",
    [
        ("learning_rate=1e-5", "lr"),
        ("num_generations=2", "group_size"),
        ("beta=0.04", "algo.kl_coef"),
        ("epsilon_high=0.28", "algo.clip_high"),
        ("max_completion_length=256", "rollout.max_response_tokens"),
        ("scale_rewards=none", "algo.advantage"),
        ("per_device_train_batch_size=8", "prompts_per_minibatch"),
        ("rollout.n=16", "group_size"),
        ("actor_rollout_ref.rollout.n=16", "group_size"),
        ("actor_rollout_ref.actor.optim.lr=1e-6", "lr"),
        ("trainer.total_epochs=2", "budget.max_epochs"),
        ("data.max_response_length=512", "rollout.max_response_tokens"),
    ],
)
def test_peer_names_point_to_ours_in_one_line(capsys, override, ours):
    assert main(["train", override, "--cfg", "job"]) == 2
    err = capsys.readouterr().err.strip()
    key = override.split("=")[0]
    assert err.startswith(f"two-grpo: error: unknown config key '{key}': that is ")
    assert f"here it is '{ours}'" in err and len(err.splitlines()) == 1


def test_every_peer_name_maps_to_a_real_key():
    from two_grpo.config.explain import schema_docs
    from two_grpo.config.peer_names import TRL, VERL

    keys = set(schema_docs()) | {"hydra.run.dir"}
    targets = {ours for table in (TRL, VERL) for ours, _ in table.values()}
    assert targets - keys == set()


def test_train_help_lists_headline_knobs_with_defaults_and_the_groups(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    lr = next(x for x in lines if x.strip().startswith("lr "))
    assert "[0.0001]" in lr and "learning rate" in lr  # the composed default (conf/train.yaml), not the schema's
    steps = next(x for x in lines if x.strip().startswith("budget.max_steps "))
    assert "[300]" in steps and "optimizer steps" in steps
    algo = next(x for x in lines if x.strip().startswith("algo "))
    assert "grpo*" in algo and "dr_grpo" in algo and "rloo" in algo
    assert any(x.strip().startswith("rollout ") and "vllm" in x and "auto*" in x for x in lines)
    assert not any(x.strip().startswith("sweep ") for x in lines)  # sweep presets are not a train group


def test_help_key_and_explain_print_type_default_allowed_and_meaning(capsys):
    assert main(["train", "--help", "algo.advantage"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "algo.advantage  (str)"
    assert "default: grpo" in out and "allowed: grpo | dr_grpo | batch_std | sign | rloo" in out
    assert main(["explain", "model.lora.r"]) == 0
    out = capsys.readouterr().out
    assert "(int)" in out and "default: 0" in out and "0 = off" in out
    assert main(["explain", "lr"]) == 0
    assert "the schema's own default is 5e-05" in capsys.readouterr().out
    assert main(["explain", "model.lora"]) == 0  # a section lists its keys
    assert "model.lora.target_modules" in capsys.readouterr().out


def test_explain_unknown_key_is_one_line_exit_2(capsys):
    assert main(["explain", "grop_size"]) == 2
    assert (
        capsys.readouterr().err.strip() == "two-grpo: error: unknown config key 'grop_size': did you mean 'group_size'?"
    )
    assert main(["explain", "num_generations"]) == 2
    assert "here it is 'group_size'" in capsys.readouterr().err


def test_version(capsys):
    from two_grpo import __version__

    assert main(["--version"]) == 0 and main(["train", "--version"]) == 0
    assert capsys.readouterr().out.splitlines() == [f"two-grpo {__version__}"] * 2


@pytest.mark.parametrize("flag", ["--info", "--config-dir=/tmp", "--config-dir", "-cd"])
def test_hydra_flags_are_refused_in_one_line(capsys, flag):
    assert main(["train", flag, "group_size=2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"two-grpo: error: {flag}: not supported")


def test_help_into_a_closed_pipe_has_no_broken_pipe_error():
    """The reader is gone before anything is written (a pipe with its read end closed): deterministic EPIPE."""
    r, w = os.pipe()
    os.close(r)
    p = subprocess.run([*PY, "train", "--help"], stdout=w, stderr=subprocess.PIPE, text=True, timeout=120)
    os.close(w)
    assert p.returncode == 0 and "BrokenPipeError" not in p.stderr and p.stderr == ""


def test_help_piped_into_head_exact_command():
    p = subprocess.run(
        f"{sys.executable} -m two_grpo.cli train --help | head -1",
        shell=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.stdout.startswith("usage: two-grpo train") and p.stdout.count("\n") == 1
    assert "BrokenPipeError" not in p.stderr and "Traceback" not in p.stderr


def test_multirun_dry_run_plans_the_product_through_the_sweep_machinery(capsys, tmp_path):
    sweep_dir = tmp_path / "mr"
    argv = ["train", "-m", "group_size=2,16", "seed=0,1,2", "experiment=smoke", "dry_run=true"]
    assert main([*argv, f"hydra.sweep.dir={sweep_dir}"]) == 0
    out = capsys.readouterr().out
    assert "6 member(s) through the sweep machinery" in out and str(sweep_dir) in out
    assert out.count("group_size2 ") == 3 and out.count("group_size16 ") == 3
    assert not sweep_dir.exists()  # a dry run writes nothing


def test_multirun_bad_member_is_refused_before_anything_runs(capsys, tmp_path):
    assert main(["train", "-m", "group_size=2,1", "experiment=smoke", f"hydra.sweep.dir={tmp_path / 'x'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "group_size=1 must be >= 2" in err and len(err.splitlines()) == 1
    assert main(["train", "-m", "seed=range(3)"]) == 2
    assert "list the values: seed=A,B,C" in capsys.readouterr().err
