"""Forward pass and loss of one micro-batch, shared by every learner backend."""

from __future__ import annotations

import contextlib
import inspect
from typing import Any

import torch

from two_grpo.algo.logprobs import chunked_head_logprobs, token_entropy, token_logprobs
from two_grpo.algo.losses import LossOptions, policy_loss
from two_grpo.algo.pairwise import pairwise_loss
from two_grpo.algo.tis import mismatch_sums, tis_weight
from two_grpo.config.schema import AlgoConfig
from two_grpo.data.batch import TrainBatch
from two_grpo.learner.packing import Layout, Packed, pack
from two_grpo.learner.segment_attention import segments_reason

DEFAULT_CHUNK_TOKENS = 1024  # LearnerConfig.logits_chunk_tokens


def forward_logprobs(
    model: Any,
    batch: TrainBatch,
    temperature: float,
    with_entropy: bool = False,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    entropy_grad: bool = False,
    layout: Layout | Packed | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs [B, L-1] of the batch's own next tokens (and entropy [B, L-1] if asked).

    Only response positions (`loss_mask` = 1) are scored; every other position holds 0. The model body runs
    once; the output head runs on the response positions' hidden states, `chunk_tokens` at a time (0: one
    chunk), so no [B, L, V] logits exist. `chunk_tokens` < 0 is the legacy reference: full logits at every
    position (also used for models without a separable body and head). `entropy_grad`: entropy with gradient
    (entropy bonus in the loss); otherwise it is a no-grad metric. `layout` (learner/packing.py): None or
    Layout() the padded rows; Layout(pack_tokens=n): padding-free, rows packed into sequences of at most n tokens
    (0: one sequence), with `shared_prefix` around one copy of each shared prompt (learner/prefix_sharing.py),
    `segment_attention` by segments where the model allows (learner/segment_attention.py; else a dense mask);
    Layout(pad_multiple=m): the input length padded up to a multiple of m (learner.compile: fewer shapes); or a
    `Packed` layout already built (learner.compile=full packs outside its graph)."""
    split = None if chunk_tokens < 0 else _body_and_head(model)
    packed, inputs = None, {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    layout = layout if layout is not None else Layout()
    segments = layout.segment_attention if isinstance(layout, Layout) else False
    segments = segments and segments_reason(model) is None  # else the dense mask
    if isinstance(layout, Packed):
        packed = layout
    elif layout.pack_tokens is not None and layout.shared_prefix:
        from two_grpo.learner.prefix_sharing import pack_shared

        packed = pack_shared(batch.input_ids, batch.attention_mask, batch.loss_mask, layout.pack_tokens,
                             multiple=layout.pad_multiple, segments=segments)  # fmt: skip
    elif layout.pack_tokens is not None:
        packed = pack(batch.input_ids, batch.attention_mask, layout.pack_tokens, multiple=layout.pad_multiple,
                      segments=segments)  # fmt: skip
    elif layout.pad_multiple > 1:
        inputs = {k: _pad_columns(v, layout.pad_multiple) for k, v in inputs.items()}
    attention = contextlib.nullcontext()
    if packed is not None:
        inputs, attention = packed.model_inputs(model), packed.attention(model)
    if split is None:
        with attention:
            logits = model(**inputs, use_cache=False).logits
        if packed is None:
            logits = logits[:, : batch.input_ids.shape[1]]  # drop pad_multiple's extra columns
        else:  # back to the padded layout [R, L, V]; positions past a row's end are never scored
            n_rows, length = batch.input_ids.shape
            cols = torch.arange(length, device=logits.device).expand(n_rows, length)
            seq, at = packed.index(torch.arange(n_rows, device=logits.device)[:, None].expand(n_rows, length), cols)
            logits = logits[seq, at.clamp(max=logits.shape[1] - 1)]
        logits = logits[:, :-1]
        logp = token_logprobs(logits, batch.input_ids[:, 1:], temperature)
        if not with_entropy:
            return logp, None
        if not entropy_grad:
            return logp, token_entropy(logits, temperature)
        full = torch.log_softmax(logits.float() / temperature, dim=-1)
        return logp, -(full.exp() * full).sum(-1)
    body, head, keep_kwargs = split
    rows, cols = batch.loss_mask.nonzero(as_tuple=True)  # [N] each: position cols predicts token cols+1
    if rows.numel() == 0:  # a dummy micro-batch: score one masked token so the graph reaches every parameter
        rows = cols = torch.zeros(1, dtype=torch.long, device=batch.loss_mask.device)
    captured: list[torch.Tensor] = []
    hook = body.register_forward_hook(lambda _m, _a, out: captured.append(out[0]))
    try:  # the model's own head runs on the last position only (logits_to_keep=1) where the model allows it
        with attention:
            model(**inputs, use_cache=False, **keep_kwargs)
    finally:
        hook.remove()
    hidden = captured[-1][rows, cols] if packed is None else captured[-1][packed.index(rows, cols)]  # [N, H]
    labels = batch.input_ids[rows, cols + 1]  # [N]
    logp_n, ent_n = chunked_head_logprobs(
        hidden, labels, head, temperature, chunk_tokens, entropy=with_entropy, entropy_grad=entropy_grad
    )
    shape = batch.loss_mask.shape
    zeros = torch.zeros(shape, dtype=torch.float32, device=logp_n.device)
    logp = zeros.index_put((rows, cols), logp_n)
    return logp, (zeros.index_put((rows, cols), ent_n) if ent_n is not None else None)


def _pad_columns(t: torch.Tensor, multiple: int) -> torch.Tensor:
    """[R, L] -> [R, L'] with zeros on the right, L' the next multiple of `multiple` (masked out: attention 0)."""
    extra = -t.shape[1] % multiple
    return torch.nn.functional.pad(t, (0, extra)) if extra else t


def _body_and_head(model: Any) -> tuple[Any, Any, dict[str, int]] | None:
    """(decoder body whose output[0] is the final hidden state [B, L, H], output head, forward kwargs) or None.

    Unwraps a DeepSpeed engine (`.module`); PEFT models forward both getters to their base model."""
    inner = getattr(model, "module", model)
    get_body, get_head = getattr(inner, "get_decoder", None), getattr(inner, "get_output_embeddings", None)
    if get_body is None or get_head is None:
        return None
    body, head = get_body(), get_head()
    if body is None or head is None or body is inner:
        return None
    base = inner.get_base_model() if hasattr(inner, "get_base_model") else inner
    keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(base.forward).parameters else {}
    return body, head, keep


def micro_batch_loss(
    model: Any,
    micro: TrainBatch,
    algo: AlgoConfig,
    temperature: float,
    minibatch_tokens: float,
    minibatch_seqs: float,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    layout: Layout | Packed | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one micro-batch, normalised by its whole mini-batch (so micro-splits sum to the same loss).

    The entropy is always logged; it carries gradient only when `algo.entropy_coef` > 0. `layout`: forward_logprobs'
    (None: the padded rows)."""
    logp, entropy = forward_logprobs(
        model, micro, temperature, with_entropy=True, chunk_tokens=chunk_tokens, entropy_grad=algo.entropy_coef > 0,
        layout=layout,
    )  # fmt: skip
    old = micro.old_logp if micro.old_logp is not None else logp.detach()  # on-policy: ratio == 1
    behav, weight, extra = micro.behav_logp, None, {}
    if behav is not None:  # the engine reported its sampling log-probs (vLLM)
        extra = mismatch_sums(old, behav, micro.loss_mask)
        if algo.old_logp_source == "engine":
            old = behav
        elif algo.tis_cap > 0:
            weight = tis_weight(old, behav, algo.tis_cap)
    if algo.loss == "pairwise":
        loss, metrics = pairwise_micro_loss(logp, old, micro, algo, minibatch_seqs)
        extra["loss/entropy_sum"] = (entropy * micro.loss_mask).sum().detach()
        return loss, {**metrics, **extra}
    opts = LossOptions.from_algo(algo, minibatch_tokens, minibatch_seqs)
    loss, metrics = policy_loss(
        logp, old, micro.adv, micro.loss_mask, opts, ref_logp=micro.ref_logp, entropy=entropy, token_weight=weight
    )
    if weight is not None:
        extra["loss/tis_weight_mean_sum"] = (weight * micro.loss_mask).sum()
    return loss, {**metrics, **extra}


def pairwise_micro_loss(logp, old, micro: TrainBatch, algo: AlgoConfig, minibatch_seqs: float):
    """algo.loss=pairwise on a micro-batch of whole pairs; a dummy micro-batch (no response token) adds 0.
    The advantage orders each pair: A > 0 marks the rewarded row, equal advantages a tied pair."""
    if float(micro.loss_mask.sum()) == 0:
        return (logp * 0.0).sum(), {}
    return pairwise_loss(logp, old, micro.loss_mask, micro.adv, micro.group_ids, beta=algo.pairwise_beta,
                         minibatch_pairs=minibatch_seqs / 2)  # fmt: skip


def accumulate(sums: dict[str, float], metrics: dict[str, torch.Tensor]) -> None:
    """Add one micro-batch's metrics into `sums`: `*_max` keys keep the max, every other key is summed."""
    for key, value in metrics.items():
        v = float(value)
        sums[key] = max(sums.get(key, v), v) if key.endswith("_max") else sums.get(key, 0.0) + v


def summarize(sums: dict[str, float], n_tokens: float) -> dict[str, float]:
    """Turn `*_sum` token sums into per-token means; pass other metrics through."""
    out: dict[str, float] = {}
    for key, value in sums.items():
        if key.endswith("_sum"):
            out[key[: -len("_sum")]] = value / max(n_tokens, 1.0)
        else:
            out[key] = value
    if "loss/pair_margin_total" in out:  # algo.loss=pairwise: mean margin over the pairs with signal
        out["loss/pair_margin_mean"] = out.pop("loss/pair_margin_total") / max(out.get("loss/pairs_signal", 0.0), 1.0)
    return out
