"""learner.compile=full end to end: a smoke run trains through the compiled micro-batch loss (slow: one compile)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_smoke_run_with_the_full_compile(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    args = ["train", "experiment=smoke", f"model.path={tiny_model_dir}", f"hydra.run.dir={run_dir}",
            "learner.compile=full", "eval.prompts=0", "eval.difficulty_prompts=0"]  # fmt: skip
    p = subprocess.run([sys.executable, "-m", "two_grpo.cli", *args], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=900)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(r["optim/skipped"] == 0 for r in rows)  # finite losses and gradients: every update applied
    assert list((tmp_path / "inductor").iterdir()), "the compile wrote nothing to the inductor cache"
    saved = (run_dir / "config.yaml").read_text()
    assert "compile: full" in saved
