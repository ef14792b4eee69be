"""rollout=auto|hf|vllm resolution and the vLLM engine's arguments, without importing vllm.
Run: pytest tests/unit/test_vllm_choice.py"""

import pytest

from two_grpo import rollout
from two_grpo.config.schema import ConfigError, RolloutConfig
from two_grpo.rollout.vllm_engine import _checkpoint_name, engine_kwargs


def test_auto_resolves_to_vllm_only_when_importable(compose, monkeypatch):
    cfg = compose(["model.path=Qwen/Qwen2.5-Math-1.5B"])
    assert cfg.rollout.backend == "auto"
    monkeypatch.setattr(rollout, "vllm_importable", lambda: True)
    assert rollout.resolve_backend(cfg) == "vllm"
    monkeypatch.setattr(rollout, "vllm_importable", lambda: False)
    assert rollout.resolve_backend(cfg) == "hf"
    assert rollout.resolve_backend(compose(["rollout=hf"])) == "hf"
    with pytest.raises(ConfigError, match="rollout=vllm but vllm is not installed"):
        rollout.resolve_backend(compose(["rollout=vllm"]))


def test_auto_keeps_the_builtin_model_on_hf_on_a_cpu(compose, monkeypatch):
    monkeypatch.setattr(rollout, "vllm_importable", lambda: True)
    monkeypatch.setattr(rollout, "_tiny_on_cpu", lambda cfg: cfg.model.path.startswith("builtin:"))
    assert rollout.resolve_backend(compose([])) == "hf"  # the embedded default: model.path=builtin:tiny
    assert rollout.resolve_backend(compose(["rollout=vllm"])) == "vllm"  # an explicit choice is kept


def test_engine_logprob_options_need_an_engine_that_reports_them(compose):
    with pytest.raises(ConfigError, match="tis_cap"):
        rollout.resolve_backend(compose(["rollout=hf", "algo.tis_cap=2"]))
    with pytest.raises(ConfigError, match="old_logp_source"):
        rollout.resolve_backend(compose(["rollout=hf", "algo.old_logp_source=engine"]))
    with pytest.raises(ConfigError, match="enable_sleep"):
        rollout.resolve_backend(compose(["rollout=hf", "rollout.enable_sleep=true"]))


def test_bad_vllm_values_fail_at_compose_with_the_key(compose):
    with pytest.raises(ConfigError, match="rollout.dtype"):
        compose(["rollout=vllm", "rollout.dtype=fp8"])
    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        compose(["rollout=vllm", "rollout.gpu_memory_utilization=1.5"])
    with pytest.raises(ConfigError, match="tis_cap"):
        compose(["algo.tis_cap=-1"])


def test_engine_kwargs_cpu_single_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    cfg = RolloutConfig(backend="vllm", kv_cache_gb=0.5)
    kw = engine_kwargs("/m", cfg, "float32", seed=3, max_model_len=140, max_num_seqs=256)
    assert kw["dtype"] == "float32" and kw["seed"] == 3 and kw["max_model_len"] == 140
    assert kw["kv_cache_memory_bytes"] == 512 * 2**20
    assert kw["logprobs_mode"] == "processed_logprobs"  # log-probs of the tempered distribution that sampled
    assert "distributed_executor_backend" not in kw and "enable_sleep_mode" not in kw


def test_engine_kwargs_tensor_parallel_uses_the_external_launcher(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    cfg = RolloutConfig(backend="vllm", dtype="bfloat16", kv_cache_gb=0.0, tensor_parallel_size=2)
    kw = engine_kwargs("/m", cfg, "float32", seed=0, max_model_len=4096, max_num_seqs=256)
    assert kw["dtype"] == "bfloat16" and "kv_cache_memory_bytes" not in kw
    assert kw["distributed_executor_backend"] == "external_launcher" and kw["tensor_parallel_size"] == 2
    assert "data_parallel_size" not in kw  # each TP group is its own engine (no lockstep vLLM DP group)


def test_checkpoint_names_drop_wrapper_prefixes():
    assert _checkpoint_name("module.model.embed_tokens.weight") == "model.embed_tokens.weight"
    assert _checkpoint_name("_orig_mod.module.lm_head.weight") == "lm_head.weight"
    assert _checkpoint_name("model.layers.0.mlp.up_proj.weight") == "model.layers.0.mlp.up_proj.weight"
