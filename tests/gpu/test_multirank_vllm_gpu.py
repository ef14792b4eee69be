"""Two ranks, each with its own colocated vLLM engine and a DeepSpeed ZeRO learner (the topology the CPU suite
cannot run: two vLLM CPU engines do not fit a 2-core box). Needs 2 CUDA GPUs and vllm; skipped cleanly otherwise.
Run: make test-gpu"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs"),
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vllm not installed (pip install '.[vllm]')"),
    pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="deepspeed not installed"),
]


@pytest.mark.parametrize("learner", ["zero2", "zero3"])
def test_two_ranks_each_with_its_own_vllm_engine(tmp_path, tiny_model_dir, learner):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "two_grpo.cli", "train", f"model.path={tiny_model_dir}", f"hydra.run.dir={run_dir}"]
    cmd += [f"learner={learner}", "rollout=vllm", "rollout.gpu_memory_utilization=0.2", "rollout.kv_cache_gb=0"]
    cmd += ["prompts_per_rollout=8", "prompts_per_minibatch=4", "group_size=4", "budget.max_steps=4"]
    cmd += ["eval.prompts=8", "task.arith.partial_credit=true", "logger.progress=false"]
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and all(r["dist/world_size"] == 2 for r in rows)
    assert rows[-1]["budget/rollouts_total"] == 2 * 8 * 4  # global counts over both ranks
    assert all(r["time/sync"] > 0 for r in rows if r["step"] % 2 == 0)  # pushes into each rank's engine
    assert all(r["rollout/logprob_diff_max"] < 0.5 for r in rows)  # the pushed weights are the ones sampled
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["rollout_backend"] == "vllm" and len(summary["memory/peak_gb_per_rank"]) == 2
