"""`learner.segment_attention`: attention over a packed micro-batch (`learner.padding_free`, `shared_prefix`)
by segments. Each row's queries attend only the keys they may see (its shared prompt copy, then its own tokens,
causally), gathered into one small batch [J, Lq, Lk], instead of each packed sequence's whole [T, T] square
under a block mask.

A packed sequence of k rows of r tokens after a p-token prompt costs (p + k·r)² score entries under a dense mask,
and CPU sdpa computes every masked block; by segments it costs p² + k·r·(p + r). Same softmax over the same keys
at the same RoPE positions (rotated before attention): the same outputs to fp32 rounding
(tests/unit/test_segment_attention.py), so `pack_tokens` no longer trades attention cost against packing.

It runs as a transformers attention function (`AttentionInterface`, name ATTN_NAME), switched on only around the
learner's forward (`segments_on(model)`), the layout passed in place of the mask (`{"full_attention": Segments}`:
the decoder hands a dict mask to its layers as-is). Only for decoders whose attention is plain softmax attention
(`segments_reason`); others keep the dense mask.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

ATTN_NAME = "two_grpo_segments"
PLAIN_ATTENTION = ("qwen2", "qwen3", "llama", "mistral")  # softmax(q·k·scale) v, no softcap / sinks / alibi


@dataclass
class Segments:
    """Where each segment's queries and keys sit in the flattened packed batch [S·T] (T = `width`)."""

    q_index: torch.Tensor  # [J, Lq] int64: segment j's query positions s·T + t (padding: 0)
    k_index: torch.Tensor  # [J, Lk] int64: its keys: the prompt copy's positions, then its own (padding: 0)
    visible: torch.Tensor  # [J, 1, Lq, Lk] bool: query i attends key c (a padding query sees key 0 only)
    q_valid: torch.Tensor  # [J, Lq] bool: real queries
    out_index: torch.Tensor  # [N] int64: q_index[q_valid], every real token once
    q_real: torch.Tensor  # [2, N] int64: (segment, query) of each real query, in out_index's order
    width: int

    @classmethod
    def build(cls, spans: list[tuple[int, int, int, int, int]], width: int, device: Any = None) -> Segments:
        """From spans (sequence, prefix start, prefix length, start, length): the segment's own tokens are
        [start, start + length) of its sequence; it also sees [prefix start, prefix start + prefix length)."""
        t = torch.tensor(spans, dtype=torch.long).reshape(-1, 5)
        seq, p_start, p_len, start, length = (x[:, None] for x in t.unbind(1))  # [J, 1] each
        n_q = max(int(length.max()) if len(t) else 1, 1)
        n_k = max(int((p_len + length).max()) if len(t) else 1, 1)
        i, c = torch.arange(n_q)[None], torch.arange(n_k)[None]  # [1, Lq], [1, Lk]
        base = seq * width
        q_valid = i < length  # [J, Lq]
        q_index = torch.where(q_valid, base + start + i, 0)
        in_prefix, own = c < p_len, c - p_len  # [J, Lk]
        k_valid = in_prefix | ((own >= 0) & (own < length))
        k_index = torch.where(k_valid, base + torch.where(in_prefix, p_start + c, start + own), 0)
        sees = in_prefix[:, None, :] | ((own[:, None, :] >= 0) & (own[:, None, :] <= i[:, :, None]))  # [J, Lq, Lk]
        visible = torch.where(q_valid[:, :, None], sees, c[:, None, :] == 0)
        on = {"device": device}
        return cls(q_index.to(**on), k_index.to(**on), visible[:, None].to(**on), q_valid.to(**on),
                   q_index[q_valid].to(**on), torch.stack(torch.nonzero(q_valid, as_tuple=True)).to(**on),
                   width)  # fmt: skip


def segment_attention_forward(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Segments,
    dropout: float = 0.0,
    scaling: float | None = None,
    **_: Any,
) -> tuple[torch.Tensor, None]:
    """transformers' attention-function signature: query [S, H, T, D], key/value [S, KV, T, D] ->
    ([S, T, H, Dv] attention output, None). Positions outside every segment (tail padding) get 0."""
    seg = attention_mask
    n_seq, n_heads, width, _ = query.shape

    def flat(x: torch.Tensor) -> torch.Tensor:  # [S, h, T, d] -> [S·T, h, d]
        return x.transpose(1, 2).reshape(n_seq * width, x.shape[1], x.shape[3])

    q = flat(query)[seg.q_index].transpose(1, 2)  # [J, H, Lq, D]
    k = flat(key)[seg.k_index].transpose(1, 2)  # [J, KV, Lk, D]
    v = flat(value)[seg.k_index].transpose(1, 2)
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=seg.visible, dropout_p=dropout, scale=scaling, enable_gqa=k.shape[1] != n_heads
    )  # [J, H, Lq, Dv]
    rows = out.transpose(1, 2)[seg.q_real[0], seg.q_real[1]]  # [N, H, Dv]; no data-dependent shape (compile)
    full = rows.new_zeros(n_seq * width, n_heads, rows.shape[-1]).index_copy(0, seg.out_index, rows)
    return full.view(n_seq, width, n_heads, rows.shape[-1]), None


def _config(model: Any) -> Any:
    return getattr(getattr(model, "module", model), "config", None)


def segments_reason(model: Any) -> str | None:
    """Why `model` cannot attend by segments (then the learner passes the dense mask), or None."""
    config = _config(model)
    kind = getattr(config, "model_type", None)
    if kind not in PLAIN_ATTENTION:
        return f"segment attention supports {', '.join(PLAIN_ATTENTION)}, not {kind}"
    sliding = "sliding_attention" in (getattr(config, "layer_types", None) or [])
    if sliding or getattr(config, "use_sliding_window", False) or (kind == "mistral" and config.sliding_window):
        return "segment attention has no sliding window"
    if getattr(config, "_attn_implementation", None) not in ("sdpa", "eager"):
        return f"segment attention replaces sdpa or eager, not {config._attn_implementation!r}"
    return None


@contextlib.contextmanager
def segments_on(model: Any) -> Iterator[None]:
    """Within the block the model's attention layers run `segment_attention_forward` (they look their function up
    by `config._attn_implementation` at every call); the previous implementation is restored after."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTN_NAME, segment_attention_forward)
    config = _config(model)
    previous = config._attn_implementation
    config._attn_implementation = ATTN_NAME
    try:
        yield
    finally:
        config._attn_implementation = previous
