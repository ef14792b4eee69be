"""Small random decoders for tests (importable from any test: tests/ is on sys.path via conftest.py)."""

from __future__ import annotations

from typing import Any

import torch


def small_config(
    vocab: int,
    hidden: int = 32,
    intermediate: int = 64,
    heads: int = 4,
    kv_heads: int = 2,
    positions: int = 64,
    tied: bool = True,
    kind: str = "qwen2",
    **extra: Any,
):
    """A 2-layer config: Qwen2 (q/k/v biases) or Llama (no biases); `extra` goes to the config as is."""
    from transformers import LlamaConfig, Qwen2Config

    return (Qwen2Config if kind == "qwen2" else LlamaConfig)(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=positions,
        tie_word_embeddings=tied,
        **extra,
    )


def random_model(config: Any, seed: int = 0, attn: str | None = None):
    """The float32 causal LM of `config`, initialized after torch.manual_seed(seed)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation=attn)
