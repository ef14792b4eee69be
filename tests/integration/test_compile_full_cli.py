"""learner.compile=full end to end: a smoke run trains through the compiled micro-batch loss and logs the same
losses as the eager learner on the same rollouts (slow: one cold compile)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def smoke_run(tmp_path, name: str, *extra: str) -> list[dict]:
    run_dir = tmp_path / name
    env = {**os.environ, "WANDB_MODE": "offline", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    args = ["train", "experiment=smoke", f"hydra.run.dir={run_dir}", "budget.max_steps=2",
            "eval.prompts=0", "eval.difficulty_prompts=0", "logger.dump_rollouts_every=0", *extra]  # fmt: skip
    p = subprocess.run([sys.executable, "-m", "two_grpo.cli", *args], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=1800)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    assert "compile: full" in (run_dir / "config.yaml").read_text() or not extra
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_smoke_run_with_the_full_compile_matches_eager(tmp_path):
    """One rollout batch, two mini-batches (the second off-policy: the compiled no-grad log-prob graph runs too).
    The engine samples eagerly from the same weights and seed, so the first step's rollouts are the same in both
    runs and the logged losses must agree to fp32 rounding. builtin:tiny itself (the project cache's, as
    test_learns uses): the 30-step warm start of `tiny_model_dir` earns no reward, so no gradient to compare."""
    eager = smoke_run(tmp_path, "eager")
    full = smoke_run(tmp_path, "full", "learner.compile=full")
    assert [r["step"] for r in full] == [1, 2]
    assert all(r["optim/skipped"] == 0 for r in full)  # finite losses and gradients: every update applied
    assert list((tmp_path / "inductor").iterdir()), "the compile wrote nothing to the inductor cache"
    for e, f in zip(eager, full):
        assert e["budget/tokens_generated_total"] == f["budget/tokens_generated_total"]  # the same rollouts
        for key in ("loss/policy", "loss/ratio_mean", "loss/entropy", "optim/grad_norm"):
            assert f[key] == pytest.approx(e[key], rel=1e-4, abs=1e-6), key
    assert all(r["optim/grad_norm"] > 0 for r in eager)  # non-trivial gradients were compared
