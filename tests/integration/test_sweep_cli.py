"""A tiny sweep through Hydra's multirun + submitit launcher, its report, and a rerun that only runs what is
missing (an unfinished member, a failing member) and skips finished ones. Run:
pytest -m slow tests/integration/test_sweep_cli.py"""

import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def run_cli(args, cwd, timeout=900):
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "two_grpo.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_sweep_report_and_rerun_finishes_only_what_is_missing(tmp_path, tiny_model_dir):
    sweep_dir = tmp_path / "sw"
    args = [
        "sweep",
        "sweep=smoke",
        f"dir={sweep_dir}",
        "seeds=[0]",
        "parallel=2",
        f"model.path={tiny_model_dir}",
        "task.arith.train_prompts=16",
        "budget.max_epochs=1",
        "eval.prompts=8",
        "eval.every_steps=1",
        # one member that fails at run time (its data file does not exist): reported, the rest still run
        "sweep.members.g4_matched=[group_size=4,task=jsonl,task.data.path=/nonexistent/data.jsonl]",
    ]
    p = run_cli(args, tmp_path)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]  # 1: a member failed
    plan = json.loads((sweep_dir / "plan.json").read_text())
    dirs = {m["name"]: sweep_dir / m["run_id"] for m in plan["members"]}
    assert set(dirs) == {"g16", "g2_paper", "g2_matched", "g4_matched"}
    assert "FAILED" in p.stdout and plan["members"][3]["run_id"] in p.stdout.split("FAILED")[1]
    for name in ("g16", "g2_paper", "g2_matched"):
        assert (dirs[name] / "summary.json").is_file(), name
        assert (dirs[name] / "final" / "model.safetensors").is_file(), name
    assert "task.data.path='/nonexistent/data.jsonl'" in (dirs["g4_matched"] / "train.log").read_text()
    summary16 = json.loads((dirs["g16"] / "summary.json").read_text())
    summary2 = json.loads((dirs["g2_matched"] / "summary.json").read_text())
    assert summary2["rollouts"] * 8 == summary16["rollouts"] == 256  # equal epochs: 16 prompts x 16 vs x 2

    rep = run_cli(["report", str(sweep_dir)], tmp_path)
    assert rep.returncode == 0, rep.stderr[-3000:]
    md = (sweep_dir / "report" / "report.md").read_text()
    for name in ("g16", "g2_paper", "g2_matched"):
        assert f"| {name} |" in md
    assert "12.5% of rollouts" in md
    assert (dirs["g16"] / "eval_outcomes.jsonl").is_file() and "## Verdicts" in md and "Holm p =" in md
    for png in ("eval_vs_rollouts", "eval_vs_wallclock", "eval_vs_steps", "train_reward"):
        assert (sweep_dir / "report" / f"{png}.png").is_file()

    # g2_matched "was killed" after its last checkpoint (summary gone): the same command resumes it in place.
    # g2_paper "was killed" before any checkpoint: its partial attempt is kept under attempts/1 and it runs again.
    # The failing member runs again; g16 is skipped.
    (dirs["g2_matched"] / "summary.json").unlink()
    (dirs["g2_paper"] / "summary.json").unlink()
    shutil.rmtree(dirs["g2_paper"] / "checkpoints")
    before = {n: (dirs[n] / "train.log").stat().st_mtime for n in ("g16",)}
    p2 = run_cli(args, tmp_path)
    assert "1 finished (skipped)" in p2.stdout and "3 to run" in p2.stdout, p2.stdout[-3000:]
    assert (dirs["g2_matched"] / "summary.json").is_file() and (dirs["g2_paper"] / "summary.json").is_file()
    assert "resuming from" in (dirs["g2_matched"] / "train.log").read_text()
    assert not (dirs["g2_matched"] / "attempts").exists()
    assert (dirs["g2_paper"] / "attempts" / "1" / "metrics.jsonl").is_file()
    assert {n: (dirs[n] / "train.log").stat().st_mtime for n in ("g16",)} == before
