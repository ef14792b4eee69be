"""scripts/gpu_check.sh on CPU: it exits 0 with its plan, its model has Qwen2.5-Math-1.5B's exact shapes (built on
`meta`, no memory), and its training step runs end to end when shrunk. Run: pytest tests/unit/test_gpu_check.py"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_prints_the_plan_and_exits_0():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    p = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh")], capture_output=True, text=True, env=env, timeout=300
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert "no CUDA device: nothing run" in p.stdout
    assert 'tests/gpu -k "not vllm"' in p.stdout and "--learner torch" in p.stdout and "--learner zero2" in p.stdout


def test_model_has_qwen25_math_1p5b_shapes(gpu_check):
    model = gpu_check.build_model("meta")
    c = model.config
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.intermediate_size) == (151936, 1536, 28, 8960)
    assert (c.num_attention_heads, c.num_key_value_heads, c.max_position_embeddings) == (12, 2, 4096)
    assert c.tie_word_embeddings and model.lm_head.weight is model.model.embed_tokens.weight
    assert c.rope_parameters["rope_theta"] == 10000.0 and next(model.parameters()).dtype == torch.bfloat16
    assert sum(p.numel() for p in model.parameters()) == 1_543_714_304  # Qwen2.5-1.5B's published count


def test_step_config_is_paper_shaped(gpu_check):
    from two_grpo.models.loading import check_positions

    for learner in gpu_check.LEARNERS:
        cfg = gpu_check.step_config(learner)
        assert cfg.prompts_per_minibatch * cfg.group_size == cfg.learner.micro_rollouts == 8
        check_positions(cfg, gpu_check.qwen25_math_1p5b_config())  # 1024 + 3072 fit the 4096 positions
    assert gpu_check.step_config("zero2").learner.zero_stage == 2


def test_step_runs_end_to_end_when_shrunk_on_cpu(gpu_check, monkeypatch):
    """run_step with a 1-layer model (same vocabulary) and short rows, on CPU with the CUDA calls stubbed."""
    from transformers import AutoModelForCausalLM

    def small_model(device, dtype=None):
        c = gpu_check.qwen25_math_1p5b_config()
        c.hidden_size, c.num_hidden_layers, c.intermediate_size, c.num_attention_heads = 32, 1, 64, 4
        c.num_key_value_heads = 2
        return AutoModelForCausalLM.from_config(c, dtype=torch.float32)

    monkeypatch.setattr(gpu_check, "build_model", small_model)
    monkeypatch.setattr(gpu_check, "PROMPT_TOKENS", 16)
    monkeypatch.setattr(gpu_check, "RESPONSE_TOKENS", 24)
    monkeypatch.setattr(gpu_check, "GENERATED_TOKENS", 4)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 3 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda: "stub")
    out = gpu_check.run_step("torch")
    assert out["tokens"] == 8 * 40 and out["loss_finite"] and out["step_s"] > 0 and out["peak_allocated_gb"] == 3.0
    assert out["mfu"] == pytest.approx(6 * out["params"] * out["tokens"] / out["step_s"] / 989e12, rel=0.02)
