"""Load a causal LM and its tokenizer: a HF id, a local folder, or `builtin:tiny` (built locally on first use)."""

from __future__ import annotations

import os
import sys
from typing import Any

import torch

from two_grpo.config import ConfigError, ModelConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def save_quietly(model: Any, folder: Any, **kwargs: Any) -> None:
    """`model.save_pretrained(folder, safetensors)` without transformers' "Writing model shards" progress bar on
    stderr (our errors and summaries are one-line, so a stray bar would break them)."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(folder, safe_serialization=True, **kwargs)
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def resolve_model_path(cfg: ModelConfig, quiet: bool = False, task: Any = None) -> str:
    """Local folder or hub id for `cfg.path`, building builtin:tiny when needed. Fails before loading weights.
    builtin:tiny is warm-started on `task` (a TaskConfig) when that task has gold answers, else on the default
    arithmetic task; the build is cached per task."""
    if cfg.path == "builtin:tiny":
        from two_grpo.tiny_model import ensure_built, recipe_for

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
    return AutoModelForCausalLM.from_pretrained(
        path,
        dtype=DTYPES[cfg.dtype],
        trust_remote_code=cfg.trust_remote_code,
        use_safetensors=None if cfg.allow_pickle else True,  # True: refuse *.bin (pickle) instead of falling back
    )
