"""A fused decode step for plain Qwen2 / Llama decoders: the lean sampler's fast path for small models on CPU.

The HF module runs ~15 small modules per layer per token; at the built-in model's size their Python and kernel
launch overhead, not FLOPs, is most of a decode step. This runs one decode step as a few fused matmuls per layer:
q, k and v in one `addmm`, gate and up in one `mm`, attention as two batched matmuls against a preallocated KV
cache, RMSNorm by `torch.nn.functional.rms_norm`. The prefill stays the HF forward (its cache is copied in).

Shapes: B rows, H hidden, nh / kvh query / key-value heads, d head_dim, g = nh / kvh, S cache slots (prompt width
+ max new tokens; every row writes the same slot at a step, since prompts are left-padded to one width).
- cache K, V per layer [B, kvh, S, d]; mask bias [B, 1, 1, S] (0 on real tokens, -inf on left padding).
- step(ids [B], positions [B], slot): logits [B, V] fp32.

Only for the exact architectures it knows (`fused_reason` says why not otherwise: PEFT wrappers, other model
types, rope scaling, sliding windows, biases it does not carry); weights are fused per sampling call, so the
learner's updates are always seen.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

SUPPORTED = ("Qwen2ForCausalLM", "LlamaForCausalLM")


def fused_reason(model: Any) -> str | None:
    """Why `model` cannot use the fused decode step, or None."""
    name = type(model).__name__
    if name not in SUPPORTED:
        return f"fused decode supports {', '.join(SUPPORTED)}, not {name}"
    cfg = model.config
    rope = getattr(cfg, "rope_scaling", None) or getattr(cfg, "rope_parameters", None) or {}
    if (rope.get("rope_type") or rope.get("type") or "default") != "default":
        return f"rope type {rope.get('rope_type') or rope.get('type')!r}"
    if getattr(cfg, "use_sliding_window", False):
        return "sliding-window attention"
    if getattr(cfg, "hidden_act", "silu") != "silu" or getattr(cfg, "mlp_bias", False):
        return "an MLP other than bias-free SiLU-gated"
    if getattr(cfg, "_attn_implementation", "sdpa") not in ("sdpa", "eager"):
        return f"attention implementation {cfg._attn_implementation!r}"
    attn = model.model.layers[0].self_attn
    if getattr(attn.o_proj, "bias", None) is not None or getattr(model.lm_head, "bias", None) is not None:
        return "an output-projection or head bias"
    return None


class FusedDecoder:
    """Fused weights of `model` (taken now) and a KV cache; `load_prefill` then `step` per generated token."""

    def __init__(self, model: Any):
        cfg = model.config
        inner = model.model
        self.eps = cfg.rms_norm_eps
        self.heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or self.heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // self.heads
        self.scale = self.head_dim**-0.5
        self.embed = inner.embed_tokens.weight
        self.rotary = inner.rotary_emb
        self.norm = inner.norm.weight
        self.head = model.lm_head.weight
        self.layers = []
        for layer in inner.layers:
            a, m = layer.self_attn, layer.mlp
            w_qkv = torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight])  # [(nh + 2 kvh) d, H]
            biases = [a.q_proj.bias, a.k_proj.bias, a.v_proj.bias]
            b_qkv = torch.cat(biases) if all(b is not None for b in biases) else None
            self.layers.append(
                (
                    layer.input_layernorm.weight, w_qkv.t().contiguous(), b_qkv, a.o_proj.weight.t().contiguous(),
                    layer.post_attention_layernorm.weight,
                    torch.cat([m.gate_proj.weight, m.up_proj.weight]).t().contiguous(),  # [H, 2 I]
                    m.down_proj.weight.t().contiguous(),
                )
            )  # fmt: skip
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []

    def load_prefill(self, past: Any, attention_mask: torch.Tensor, slots: int) -> None:
        """Copy the HF prefill cache (keys/values [B, kvh, P, d] per layer) into [B, kvh, slots, d] buffers."""
        width = attention_mask.shape[1]
        self.k, self.v = [], []
        for layer in past.layers:
            keys, values = layer.keys, layer.values
            b, h, _, d = keys.shape
            k = keys.new_zeros(b, h, slots, d)
            v = values.new_zeros(b, h, slots, d)
            k[:, :, :width], v[:, :, :width] = keys, values
            self.k.append(k)
            self.v.append(v)
        bias = torch.zeros(attention_mask.shape[0], 1, 1, slots, dtype=self.k[0].dtype, device=attention_mask.device)
        bias[:, 0, 0, :width].masked_fill_(attention_mask == 0, float("-inf"))
        self.bias = bias

    def select(self, idx: torch.Tensor) -> None:
        """Keep only rows `idx` of the cache."""
        self.k = [k[idx] for k in self.k]
        self.v = [v[idx] for v in self.v]
        self.bias = self.bias[idx]

    def step(self, ids: torch.Tensor, positions: torch.Tensor, slot: int) -> torch.Tensor:
        """One token per row: ids [B], positions [B] -> logits [B, V] fp32, writing cache slot `slot`."""
        b = ids.shape[0]
        nh, kvh, d = self.heads, self.kv_heads, self.head_dim
        h = F.embedding(ids, self.embed)  # [B, H]
        cos, sin = self.rotary(h[:, None], positions[:, None])  # [B, 1, d]
        cos, sin = cos[:, 0, None], sin[:, 0, None]  # [B, 1, d]: broadcast over heads
        half = d // 2
        n = slot + 1
        bias = self.bias[..., :n]
        for i, (w_in, w_qkv, b_qkv, w_o, w_post, w_gu, w_down) in enumerate(self.layers):
            x = F.rms_norm(h, (h.shape[-1],), w_in, self.eps)
            qkv = torch.addmm(b_qkv, x, w_qkv) if b_qkv is not None else x @ w_qkv
            q = qkv[:, : nh * d].view(b, nh, d)
            k = qkv[:, nh * d : (nh + kvh) * d].view(b, kvh, d)
            v = qkv[:, (nh + kvh) * d :].view(b, kvh, d)
            q = q * cos + torch.cat([-q[..., half:], q[..., :half]], -1) * sin
            k = k * cos + torch.cat([-k[..., half:], k[..., :half]], -1) * sin
            self.k[i][:, :, slot] = k
            self.v[i][:, :, slot] = v
            qg = q.view(b, kvh, nh // kvh, d)  # [B, kvh, g, d]
            att = torch.matmul(qg, self.k[i][:, :, :n].transpose(-1, -2)) * self.scale + bias  # [B, kvh, g, n]
            o = torch.matmul(att.softmax(-1), self.v[i][:, :, :n]).reshape(b, nh * d)
            h = h + o @ w_o
            x = F.rms_norm(h, (h.shape[-1],), w_post, self.eps)
            gate, up = (x @ w_gu).chunk(2, dim=-1)
            h = h + (F.silu(gate) * up) @ w_down
        h = F.rms_norm(h, (h.shape[-1],), self.norm, self.eps)
        return (h @ self.head.t()).float()
