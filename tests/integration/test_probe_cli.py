"""`two-grpo probe` end to end, and its prediction against a real run's first steps:
pytest -m slow tests/integration/test_probe_cli.py"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def cli(*args, cwd):
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "two_grpo.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=1800
    )  # may wait for builtin:tiny's first build


def test_probe_predicts_the_first_rollout_batches(tmp_path):
    model = "model.path=builtin:tiny"  # the embedded default (built once into the cache, shared with test_learns)
    p = cli("probe", model, "probe.prompts=64", "probe.samples=16", f"probe.out={tmp_path / 'probe'}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    result = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert [r["group_size"] for r in result["table"]] == [2, 4, 8, 16, 32]
    assert len(result["correct"]) == 64 and all(0 <= c <= 16 for c in result["correct"])
    assert 0.05 < result["solve_rate"] < 0.95, result["solve_rate"]  # the check below needs mixed groups
    assert "recommended group_size=" in p.stdout

    # the same model trained at a negligible lr: its first 4 rollout batches (128 groups of G=8) are the
    # initial policy's; the observed zero-variance fraction must match the prediction within sampling error
    run = tmp_path / "run"
    p = cli("train", model, "lr=1e-12", "budget.max_steps=4", "eval.prompts=0", f"hydra.run.dir={run}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    p = cli(
        "probe", model, f"probe.check_run={run}", "probe.check_batches=4", f"probe.out={tmp_path / 'p2'}", cwd=tmp_path
    )
    assert p.returncode == 0, p.stderr[-2000:]
    check = json.loads((tmp_path / "p2" / "probe.json").read_text())["check"]
    assert check["group_size"] == 8 and check["groups"] == 128
    assert abs(check["z"]) < 3.5, check
    assert "check: the run's first 4 rollout batch(es)" in p.stdout


def test_probe_bad_input_is_one_line(tmp_path, capsys, monkeypatch):
    p = cli("probe", "probe.promts=3", cwd=tmp_path)  # the real process: exit 2, exactly this one stderr line
    assert p.returncode == 2
    assert p.stderr.strip() == (
        "two-grpo: error: unknown probe option 'probe.promts'; use one of: prompts, samples, out, check_run, "
        "check_batches, time_rollouts"
    )
    from two_grpo.cli import main  # the next input error through the entry point in-process (no start-up)

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["probe", f"probe.check_run={tmp_path}"]) == 2
    assert "no metrics.jsonl there" in capsys.readouterr().err


def test_resampling_counts_every_rollout_in_the_budget(tmp_path, tiny_model_dir):
    """algo.resample_zero_var: each rollout batch generates P*G plus the resampled rollouts, and budget/* counts
    all of them; the cap holds."""
    run = tmp_path / "rs"
    args = ["train", f"model.path={tiny_model_dir}", "group_size=2", "prompts_per_rollout=8", "prompts_per_minibatch=8",
            "algo.resample_zero_var=true", "algo.resample_max_rollouts=8", "budget.max_steps=3", "eval.prompts=0",
            f"hydra.run.dir={run}"]  # fmt: skip
    p = cli(*args, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    total = 0
    for m in lines:
        assert 0 <= m["rollout/resampled_rollouts"] <= 8 and m["rollout/resampled_rollouts"] % 2 == 0
        total += 16 + m["rollout/resampled_rollouts"]
        assert m["budget/rollouts_total"] == total
    assert any(m["rollout/resampled_rollouts"] > 0 for m in lines)  # the barely-trained fixture model fails a lot
