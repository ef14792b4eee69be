"""The GPU tier (tests/gpu) checked on CPU, so that errors in it are caught in CI: every module imports with CUDA
faked, and its helpers run (an engine factory that passed `dtype` twice crashed before testing anything).
Run: pytest tests/unit/test_gpu_tier.py"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch

GPU_DIR = Path(__file__).parents[1] / "gpu"
GPU_MODULES = sorted(p.stem for p in GPU_DIR.glob("test_*.py"))


def load_gpu_module(name: str, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    spec = importlib.util.spec_from_file_location(f"gpu_tier_{name}", GPU_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", GPU_MODULES)
def test_every_gpu_module_imports_with_cuda_faked(name, monkeypatch):
    module = load_gpu_module(name, monkeypatch)
    marks = getattr(module, "pytestmark", [])
    assert any(m.name == "gpu" for m in marks), f"tests/gpu/{name}.py lacks pytest.mark.gpu"
    assert [n for n in dir(module) if n.startswith("test_")], f"tests/gpu/{name}.py has no tests"


def test_vllm_gpu_engine_factory_accepts_every_override(monkeypatch, tmp_path):
    module = load_gpu_module("test_vllm_gpu", monkeypatch)
    import two_grpo.models.loading
    import two_grpo.rollout.vllm_engine as vllm_engine

    built = []

    class FakeEngine:
        def __init__(self, path, tokenizer, cfg, model_dtype, seed, max_num_seqs, *rest):
            built.append(cfg)

    monkeypatch.setattr(vllm_engine, "VLLMEngine", FakeEngine)
    monkeypatch.setattr(two_grpo.models.loading, "load_tokenizer", lambda path: None)
    module._engine(tmp_path, enable_sleep=True)
    module._engine(tmp_path, dtype="bfloat16")  # TypeError before the fix: dtype given twice
    assert built[0].enable_sleep and built[0].dtype == "float32" and built[1].dtype == "bfloat16"
    compile(module.TP_SCRIPT, "tp.py", "exec")


@pytest.mark.parametrize("learner,tp", [("zero2", 1), ("zero3", 1), ("zero2", 2)])
def test_multirank_gpu_overrides_compose(monkeypatch, compose, tmp_path, learner, tp):
    module = load_gpu_module("test_multirank_vllm_gpu", monkeypatch)
    overrides = module.train_overrides(tmp_path / "model", tmp_path / "run", learner, tp)
    cfg = compose([o for o in overrides if not o.startswith("hydra.")])
    assert cfg.learner.backend == "deepspeed" and cfg.rollout.tensor_parallel_size == tp


def test_learner_gpu_helpers_run_on_cpu(monkeypatch, tiny_model_dir):
    """The GPU learner test's config and batch, through the torch learner on CPU: the metric keys it reads exist."""
    module = load_gpu_module("test_learner_gpu", monkeypatch)
    monkeypatch.undo()  # real CPU from here
    from two_grpo.learner import make_learner
    from two_grpo.models.loading import load_model

    cfg = module.learner_config(tiny_model_dir, "torch")
    assert module.learner_config(tiny_model_dir, "zero2").learner.zero_stage == 2
    learner = make_learner(cfg, load_model(str(tiny_model_dir), cfg.model))
    batch = module.batch_with_every_field()
    batch = batch.with_logprobs(old_logp=batch.old_logp, ref_logp=learner.ref_logprobs(batch))
    metrics = learner.train_minibatch(batch)
    assert math.isfinite(metrics["loss/policy"]) and metrics["rollout/logprob_diff_max"] > 0
    assert "loss/tis_weight_mean" in metrics
