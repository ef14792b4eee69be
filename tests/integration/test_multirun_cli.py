"""`two-grpo train -m group_size=2,4 seed=0,1 ...`, Hydra's multirun syntax, on the sweep machinery: every member
in its own process, one line per finished member, a dir `two-grpo report` reads, and the same command again skips
the finished members. Run: pytest -m slow tests/integration/test_multirun_cli.py"""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def run_cli(args, cwd, timeout=900):
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "two_grpo.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_train_dash_m_runs_the_product_as_a_sweep_and_skips_on_rerun(tmp_path, tiny_model_dir):
    sweep_dir = tmp_path / "mr"
    args = ["train", "-m", "group_size=2,4", "seed=0,1", "experiment=smoke", f"model.path={tiny_model_dir}"]
    args += ["rollout=hf", "budget.max_steps=2", "eval.prompts=0", f"hydra.sweep.dir={sweep_dir}"]
    p = run_cli(args, tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "LexerNoViableAltException" not in p.stdout + p.stderr
    assert "4 member(s) through the sweep machinery" in p.stdout
    plan = json.loads((sweep_dir / "plan.json").read_text())
    assert plan["sweep_command"][:3] == ["two-grpo", "train", "-m"]
    members = plan["members"]
    assert sorted((m["name"], m["seed"]) for m in members) == [
        ("group_size2", 0), ("group_size2", 1), ("group_size4", 0), ("group_size4", 1)
    ]  # fmt: skip
    for m in members:
        run_dir = sweep_dir / m["run_id"]
        assert json.loads((run_dir / "summary.json").read_text())["optimizer_steps"] == 2
        assert (run_dir / "train.log").is_file() and m["run_id"] in p.stdout  # its own process, its own log
    done_lines = [x for x in p.stdout.splitlines() if x.startswith("member ") and " done: " in x]
    assert len(done_lines) == 4 and all("sweep ETA" in x for x in done_lines)
    assert f"report: two-grpo report {sweep_dir}" in p.stdout
    r = run_cli(["report", str(sweep_dir)], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    again = run_cli(args, tmp_path)
    assert again.returncode == 0 and "4 finished (skipped)" in again.stdout and "0 to run" in again.stdout
