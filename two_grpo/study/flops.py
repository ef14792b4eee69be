"""Model FLOPs of the learner and the sampler (for utilisation = model FLOP/s / the machine's peak), and that peak.

Counted as a dense matmul costs 2·m·n·k, for a decoder-only transformer given by its HF config (Qwen2/Llama
names: hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads, head_dim,
vocab_size). Only matmuls count (norms, activations, softmax, RoPE and the embedding lookup are free), and
attention is counted as eager attention computes it: QK^T and AV over the full L×L square of each sequence
(the causal half is not subtracted, as in the PaLM / Megatron MFU convention). Backward = 2 × forward.

- learner: forward + backward over every token of every row; the output head only on the scored (response)
  positions, as `learner/step.py` runs it. ≈ 6 · params · tokens.
- learner with `learner.shared_prefix`: each group's prompt once (shared_prefix_learner_flops), the work done for
  the same update; utilisation is reported on both counts.
- sampler: the prompt once (prefill), each generated token but the last fed back once (decode, attending to the
  whole cache so far), the head once per generated token. ≈ 2 · params · generated tokens.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Shape:
    """The matmul sizes of a decoder-only transformer."""

    hidden: int
    intermediate: int
    layers: int
    q_dim: int  # num_attention_heads · head_dim
    kv_dim: int  # num_key_value_heads · head_dim
    vocab: int

    @classmethod
    def of(cls, config: Any) -> Shape:
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        return cls(
            config.hidden_size, config.intermediate_size, config.num_hidden_layers, heads * head_dim,
            kv_heads * head_dim, config.vocab_size,
        )  # fmt: skip

    @property
    def body_params(self) -> int:
        """Matmul weights of the decoder layers (q, k, v, o, gate, up, down), per layer times layers."""
        h = self.hidden
        return self.layers * (h * self.q_dim + 2 * h * self.kv_dim + self.q_dim * h + 3 * h * self.intermediate)

    @property
    def head_params(self) -> int:
        return self.hidden * self.vocab

    def body_flops(self, tokens: int) -> int:
        """Forward FLOPs of the decoder layers' linear maps over `tokens` tokens."""
        return 2 * self.body_params * tokens

    def head_flops(self, tokens: int) -> int:
        return 2 * self.head_params * tokens

    def attention_flops(self, queries: int, keys: int) -> int:
        """Forward FLOPs of QK^T and AV for `queries` query tokens against `keys` keys, all layers."""
        return 4 * self.layers * self.q_dim * queries * keys


def forward_flops(shape: Shape, row_lengths: Iterable[int], scored_tokens: int) -> int:
    """One forward over rows of `row_lengths` tokens (each attends to itself only), head on `scored_tokens`."""
    lengths = [int(n) for n in row_lengths]
    body = shape.body_flops(sum(lengths)) + sum(shape.attention_flops(n, n) for n in lengths)
    return body + shape.head_flops(scored_tokens)


def learner_flops(shape: Shape, row_lengths: Iterable[int], scored_tokens: int) -> int:
    """Forward + backward (2 × forward) over the rows: the model FLOPs of one pass of the learner."""
    return 3 * forward_flops(shape, row_lengths, scored_tokens)


def shared_prefix_learner_flops(shape: Shape, groups: Iterable[tuple[int, list[int]]]) -> int:
    """Learner FLOPs with `learner.shared_prefix`: each group given as (prompt tokens, [response tokens of each
    row]) runs its prompt once; a response's queries attend to the prompt and to itself. The work the learner does
    for the same update as learner_flops over the rows (which runs every row's own copy of its prompt)."""
    body = attention = scored = 0
    for p, responses in groups:
        body += p + sum(responses)
        attention += shape.attention_flops(p, p) + sum(shape.attention_flops(r, r + 2 * p) for r in responses)
        scored += sum(responses)
    return 3 * (shape.body_flops(body) + attention + shape.head_flops(scored))


def sampler_flops(shape: Shape, prompt_len: int, generated: int) -> int:
    """FLOPs to sample `generated` tokens after a `prompt_len`-token prompt with a KV cache: prefill (head on the
    last position only), then `generated` - 1 decode steps, the step at position t attending to t + 1 keys."""
    if generated <= 0:
        return 0
    flops = shape.body_flops(prompt_len) + shape.attention_flops(prompt_len, prompt_len)
    for t in range(prompt_len, prompt_len + generated - 1):
        flops += shape.body_flops(1) + shape.attention_flops(1, t + 1)
    return flops + shape.head_flops(generated)


def rollout_flops(shape: Shape, rollouts: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """(sampler FLOPs, learner FLOPs) of rollouts given as (prompt tokens, response tokens) each; the learner
    scores every response token."""
    pairs = [(int(p), int(r)) for p, r in rollouts]
    sample = sum(sampler_flops(shape, p, r) for p, r in pairs)
    learn = learner_flops(shape, [p + r for p, r in pairs], sum(r for _, r in pairs))
    return sample, learn


def matmul_peak(
    shapes: Iterable[tuple[int, int, int]], repeats: int = 5, dtype: Any = None, device: str = "cpu", min_s: float = 0.2
) -> dict[str, Any]:
    """Measured matmul throughput at each (m, k, n) shape: [m, k] @ [k, n], `repeats` timings of a loop that runs
    at least `min_s` seconds. Returns {"shapes": [{"m", "k", "n", "median_flops_per_s", "max_flops_per_s"}],
    "peak_flops_per_s": the highest median}. dtype defaults to fp32 (use bf16 on CUDA)."""
    import torch

    dtype = dtype or torch.float32
    rows = []
    for m, k, n in shapes:
        a = torch.randn(m, k, dtype=dtype, device=device)
        b = torch.randn(k, n, dtype=dtype, device=device)
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        for _ in range(3):  # warm-up
            a @ b
        sync()
        t0, calls = time.perf_counter(), 0
        while time.perf_counter() - t0 < min_s / 4:
            a @ b
            calls += 1
        sync()
        per = (time.perf_counter() - t0) / calls
        loops = max(1, int(min_s / max(per, 1e-9)))
        rates = []
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            for _ in range(loops):
                a @ b
            sync()
            rates.append(2 * m * k * n * loops / (time.perf_counter() - t0))
        rows.append(
            {"m": m, "k": k, "n": n, "median_flops_per_s": statistics.median(rates), "max_flops_per_s": max(rates)}
        )
    return {"shapes": rows, "peak_flops_per_s": max(r["median_flops_per_s"] for r in rows)}


def model_matmul_shapes(shape: Shape, tokens: int) -> list[tuple[int, int, int]]:
    """The model's own linear-layer shapes at `tokens` rows (q, k/v, o, gate/up, down, head), plus 1024³."""
    h = shape.hidden
    own = {(tokens, h, shape.q_dim), (tokens, h, shape.kv_dim), (tokens, shape.q_dim, h),
           (tokens, h, shape.intermediate), (tokens, shape.intermediate, h), (tokens, h, shape.vocab)}  # fmt: skip
    return sorted(own) + [(1024, 1024, 1024)]
