"""Load a causal LM and its tokenizer: a HF id, a local folder, or `builtin:tiny` (built locally on first use)."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from typing import Any

import torch

from two_grpo.config.schema import ConfigError, ModelConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_model_path(cfg: ModelConfig, quiet: bool = False, task: Any = None) -> str:
    """Local folder or hub id for `cfg.path`, building builtin:tiny when needed. Fails before loading weights.
    builtin:tiny is warm-started on `task` (a TaskConfig) when that task has gold answers, else on the default
    arithmetic task; the build is cached per task."""
    if cfg.path == "builtin:tiny":
        from two_grpo.models.tiny_model import ensure_built, recipe_for

        return str(ensure_built(cfg.tiny_cache_dir, recipe=recipe_for(task), quiet=quiet))
    if cfg.path.startswith("builtin:"):
        raise ConfigError(f"model.path={cfg.path!r}: the only built-in model is builtin:tiny")
    looks_local = cfg.path.startswith((".", "/", "~")) or os.path.exists(cfg.path)
    if looks_local:
        path = os.path.expanduser(cfg.path)
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ConfigError(f"model.path={cfg.path!r}: no config.json there; give a HF model folder or a hub id")
        if not cfg.allow_pickle and not any(f.endswith(".safetensors") for f in os.listdir(path)):
            raise ConfigError(
                f"model.path={cfg.path!r}: no *.safetensors weights there (pickle weights run code when loaded); "
                "convert them to safetensors, or set model.allow_pickle=true if you trust the files"
            )
    return cfg.path


def read_model_config(path: str, trust_remote_code: bool = False) -> Any:
    """The model's config (its config.json only: no weights are read), text part of a multimodal config."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    return getattr(config, "get_text_config", lambda: config)()


def config_overrides(cfg: ModelConfig, hf_config: Any) -> dict[str, Any]:
    """`model.max_position_embeddings` / `model.rope_theta` as config attributes to overwrite ({} when unset).

    The same dict is written into the learner's loaded config (`load_model`) and passed to vLLM as
    `hf_overrides`; the RoPE base goes into transformers 5's `rope_parameters` (which `rope_theta=` no longer sets).
    """
    out: dict[str, Any] = {}
    if cfg.max_position_embeddings > 0:
        out["max_position_embeddings"] = int(cfg.max_position_embeddings)
    if cfg.rope_theta > 0:
        rope = dict(getattr(hf_config, "rope_parameters", None) or {"rope_type": "default"})
        out["rope_parameters"] = {**rope, "rope_theta": float(cfg.rope_theta)}
    return out


def model_positions(cfg: ModelConfig, hf_config: Any) -> int | None:
    """Positions the model is run with: `model.max_position_embeddings` if set, else its config's (None: unknown)."""
    if cfg.max_position_embeddings > 0:
        return int(cfg.max_position_embeddings)
    value = getattr(hf_config, "max_position_embeddings", None)
    return int(value) if value else None


def longest_response(cfg: Any) -> tuple[str, int]:
    """(key, tokens) of the longest response a run generates: training rollouts or eval (TrainConfig `cfg`)."""
    train_resp = cfg.rollout.max_response_tokens
    eval_resp = cfg.eval.max_response_tokens or train_resp
    return (
        ("eval.max_response_tokens", eval_resp)
        if eval_resp > train_resp
        else ("rollout.max_response_tokens", train_resp)
    )


def fit_prompt_tokens(cfg: Any, hf_config: Any) -> Any:
    """`cfg` with `rollout.max_prompt_tokens=0` (auto) resolved to the model's positions minus the longest
    response; unchanged otherwise. Call `check_positions` after it."""
    if cfg.rollout.max_prompt_tokens > 0:
        return cfg
    positions = model_positions(cfg.model, hf_config)
    if positions is None:
        raise ConfigError(
            f"rollout.max_prompt_tokens=0 (auto) needs max_position_embeddings in {cfg.model.path}'s config.json; "
            "set rollout.max_prompt_tokens=N (or model.max_position_embeddings=N)"
        )
    key, resp = longest_response(cfg)
    if resp >= positions:
        raise ConfigError(
            f"{key}={resp} leaves no room for a prompt in the model's max_position_embeddings={positions} "
            f"({cfg.model.path}); set {key}={positions * 3 // 4} (and rollout.max_prompt_tokens), or raise the "
            "model's positions with model.max_position_embeddings=N (and model.rope_theta)"
        )
    return replace(cfg, rollout=replace(cfg.rollout, max_prompt_tokens=positions - resp))


def check_positions(cfg: Any, hf_config: Any) -> None:
    """Refuse (ConfigError) a run whose prompt + response tokens exceed the model's positions (TrainConfig `cfg`).

    Covers training rollouts and eval (`eval.max_response_tokens`), for every engine: nothing is cut silently.
    """
    positions = model_positions(cfg.model, hf_config)
    if positions is None:
        return
    prompt = cfg.rollout.max_prompt_tokens
    key, resp = longest_response(cfg)
    if prompt + resp <= positions:
        return
    fit = f"{key}={positions - prompt}" if positions > prompt else f"rollout.max_prompt_tokens={positions - resp}"
    if positions <= prompt and positions <= resp:
        fit = f"rollout.max_prompt_tokens={positions // 4} and {key}={positions - positions // 4}"
    raise ConfigError(
        f"rollout.max_prompt_tokens={prompt} + {key}={resp} = {prompt + resp} tokens exceed the model's "
        f"max_position_embeddings={positions} ({cfg.model.path}); set {fit}, or raise the model's positions with "
        f"model.max_position_embeddings=N (and model.rope_theta, e.g. 16384 and 40000 for Qwen2.5-Math)"
    )


def load_tokenizer(path: str, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if os.path.isfile(os.path.join(path, "two_grpo_recipe.json")):  # our char-level tokenizer: keep its pipeline
        tok = PreTrainedTokenizerFast.from_pretrained(path)
    else:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str, cfg: ModelConfig) -> Any:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bar is the one the user reads
    if cfg.trust_remote_code:
        print(f"WARNING: model.trust_remote_code=true: running code shipped with {path}")
        print(f"two-grpo: WARNING: model.trust_remote_code=true runs Python code from {path}", file=sys.stderr)
    extra: dict[str, Any] = {}
    if cfg.max_position_embeddings > 0 or cfg.rope_theta > 0:  # written into the loaded config (as vLLM's hf_overrides)
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
        target = getattr(config, "get_text_config", lambda: config)()
        for key, value in config_overrides(cfg, target).items():
            setattr(target, key, value)
        extra["config"] = config
    return AutoModelForCausalLM.from_pretrained(
        path,
        dtype=DTYPES[cfg.dtype],
        **extra,
        trust_remote_code=cfg.trust_remote_code,
        use_safetensors=None if cfg.allow_pickle else True,  # True: refuse *.bin (pickle) instead of falling back
    )
