"""Rollout engines. `make_engine` picks one; vLLM is imported only inside its own adapter."""

from __future__ import annotations

import importlib.util
from typing import Any

from two_grpo.config.schema import ConfigError, TrainConfig
from two_grpo.rollout.base import RolloutEngine, Sampling

__all__ = ["RolloutEngine", "Sampling", "auto_backend", "make_engine", "resolve_backend", "vllm_importable"]


def vllm_importable() -> bool:
    """True when the `vllm` package is installed (checked without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def auto_backend(cfg: TrainConfig) -> str:
    """`rollout.backend` with `auto` resolved on this machine (unchecked). `auto` is vllm when it is importable,
    else hf; except the built-in 0.8M-parameter model on a CPU, which stays on hf: there vLLM's start-up and
    per-sequence scheduling outweigh its kernels (1.3x slower per step; README: Rollouts on vLLM), and hf
    samples from the learner's own module, so no weight sync is needed."""
    if cfg.rollout.backend != "auto":
        return cfg.rollout.backend
    return "vllm" if vllm_importable() and not _tiny_on_cpu(cfg) else "hf"


def resolve_backend(cfg: TrainConfig) -> str:
    """`auto_backend`, and the combination checked."""
    backend = auto_backend(cfg)
    if backend == "vllm" and not vllm_importable():
        raise ConfigError(
            "rollout=vllm but vllm is not installed; install it (README: Rollouts on vLLM) or use rollout=hf"
        )
    if backend == "hf" and (cfg.algo.tis_cap > 0 or cfg.algo.old_logp_source == "engine"):
        raise ConfigError(
            "algo.tis_cap / algo.old_logp_source=engine need the engine's sampling log-probs: use rollout=vllm"
        )
    if backend == "hf" and cfg.rollout.tensor_parallel_size > 1:
        raise ConfigError("rollout.tensor_parallel_size > 1 shards a vLLM engine: use rollout=vllm, or set it to 1")
    if backend == "hf" and cfg.rollout.enable_sleep:
        raise ConfigError("rollout.enable_sleep=true needs rollout=vllm on a CUDA GPU; set it to false")
    return backend


def _tiny_on_cpu(cfg: TrainConfig) -> bool:
    if not cfg.model.path.startswith("builtin:"):
        return False
    import torch

    return not torch.cuda.is_available()


def make_engine(cfg: TrainConfig, model: Any, tokenizer: Any, model_path: str = "") -> RolloutEngine:
    backend = resolve_backend(cfg)
    if backend == "hf":
        from two_grpo.rollout.hf_engine import HFEngine

        r = cfg.rollout
        return HFEngine(model, tokenizer, r.max_prompt_tokens, r.gen_rollouts_per_call, sampler=r.hf_sampler)
    if backend == "vllm":
        import torch

        from two_grpo.rollout.vllm_engine import VLLMEngine

        if cfg.rollout.enable_sleep and not torch.cuda.is_available():
            raise ConfigError("rollout.enable_sleep=true: vLLM sleep mode needs a CUDA GPU; set it to false on CPU")
        if not model_path:
            raise ValueError("make_engine(rollout=vllm) needs model_path (vLLM loads the model itself)")
        from two_grpo.dist.context import launched_world_size
        from two_grpo.models.loading import config_overrides, read_model_config
        from two_grpo.rollout.vllm_engine import engine_max_num_seqs

        r = cfg.rollout
        seqs = r.max_num_seqs or engine_max_num_seqs(
            cfg.prompts_per_rollout * cfg.group_size, r.tensor_parallel_size, launched_world_size()
        )
        longest = max(r.max_response_tokens, cfg.eval.max_response_tokens)
        max_len = r.max_prompt_tokens + longest if r.max_prompt_tokens else 0  # 0: the model's positions
        overrides = config_overrides(cfg.model, read_model_config(model_path, cfg.model.trust_remote_code))
        engine = VLLMEngine(model_path, tokenizer, r, cfg.model.dtype, cfg.seed, seqs, max_len, overrides)
        if cfg.rollout.tensor_parallel_size > 1:  # the ranks of a TP group must submit identical requests
            from two_grpo.dist.context import init_dist
            from two_grpo.rollout.tp_group import TPGroupEngine

            return TPGroupEngine(engine, cfg.rollout.tensor_parallel_size, init_dist())
        return engine
    raise ValueError(f"rollout.backend={backend!r} is not available in this build; use rollout=hf")


def engine_report(engine: RolloutEngine, cfg: TrainConfig) -> dict[str, Any]:
    """Which engine runs and its start-up cost (build + first compile), kept out of the step times."""
    out: dict[str, Any] = {"rollout_backend": engine.name, "rollout_backend_requested": cfg.rollout.backend}
    startup = getattr(engine, "startup_metrics", None)
    out.update(startup() if startup else {"time/engine_startup_s": 0.0})
    return out
