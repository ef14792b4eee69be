"""A lean sampling loop over a HF causal LM's KV cache: the HF engine's fast path (`rollout.hf_sampler=lean`).

It does what transformers `generate` does for multinomial sampling, without its per-step machinery (input
preparation, logits-processor and stopping-criteria objects, kwargs updates): prefill the left-padded prompt
batch once, then one forward per generated token over the model's cache.

Shapes: B rows, P prompt width (left-padded), N = max_new_tokens, V vocabulary.
- prefill: input_ids [B, P], attention_mask [B, P] (0 on left padding), position_ids = cumsum(mask) - 1 with
  padding set to 0 (as `generate` builds them), logits of the last position only. With `share_prompts`, each
  distinct row runs once ([U, P], U = distinct prompts: a group's G rows share one) and its cache and logits are
  then gathered to the B rows (the prefill is most of the work for short answers).
- decode step t: the last tokens [B', 1] at position P_real + t, the mask grown by a column of ones; with
  `fused`, a plain Qwen2/Llama decodes by rollout/fused_decode.py (a few fused matmuls per layer over a
  preallocated cache) instead of the HF module (any other model, PEFT-wrapped ones too, keeps the HF forward).
- sampling, as HF's logits processors in HF's order: scores = fp32 logits / temperature, then top-k (scores below
  the k-th largest -> -inf), then top-p (ascending sort, cumulative softmax <= 1 - top_p -> -inf, the largest
  kept); probs = softmax; token = torch.multinomial(probs [B, V], 1) over the FULL batch (finished rows too), so
  the RNG stream is consumed exactly as `generate` consumes it and a fixed seed gives the same tokens;
  temperature == 0: argmax of the raw logits.
- rows stop at EOS (their later tokens are `pad_id`); the loop stops when every row has finished. With
  `drop_finished`, finished rows leave the forward batch (their cache rows are dropped); sampling still draws
  over all B rows, so the tokens do not change.
- log-probs [B, N] fp32 of each chosen token under the distribution it was drawn from: log_softmax of the
  processed scores (temperature, top-k, top-p), which is what vLLM reports as `processed_logprobs`; with top-k
  and top-p off it equals the learner's `token_logprobs(logits, labels, temperature)`. Greedy: log_softmax of the
  raw logits (temperature 1). 0 after EOS.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import torch


class DecodeSpec(NamedTuple):
    """What to sample: up to `max_new_tokens` per row at `temperature` (0 = greedy), `top_k` (0 = off), `top_p`;
    rows stop at `eos_id` and are padded with `pad_id` after it."""

    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float
    eos_id: int
    pad_id: int


class LeanUnsupported(Exception):
    """The model cannot run the lean loop (the message says why); the caller falls back to `generate`."""


def unsupported_reason(model: Any) -> str | None:
    """Why `model` cannot run the lean loop, or None. Needs a decoder-only model whose forward takes
    `past_key_values` (explicitly or through **kwargs, as PEFT wrappers do)."""
    config = getattr(model, "config", None)
    if config is None:
        return "the model has no .config"
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder models are not supported"
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "the model's forward signature cannot be inspected"
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if "past_key_values" not in params and not takes_kwargs:
        return "the model's forward takes no past_key_values (no KV cache)"
    return None


def process_scores(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """[B, V] fp32 logits -> [B, V] scores with filtered tokens at -inf, exactly as HF's Temperature, TopK and
    TopP logits warpers (in that order; each skipped where `generate` skips it: T == 1, k == 0, p >= 1)."""
    scores = logits
    if temperature != 1.0:
        scores = scores / temperature
    if top_k:
        k = min(top_k, scores.size(-1))
        scores = scores.masked_fill(scores < torch.topk(scores, k)[0][..., -1, None], -float("inf"))
    if top_p < 1.0:
        sorted_scores, sorted_idx = torch.sort(scores, descending=False)
        remove = sorted_scores.softmax(dim=-1).cumsum(dim=-1) <= (1 - top_p)
        remove[..., -1:] = False  # keep at least one token
        scores = scores.masked_fill(remove.scatter(1, sorted_idx, remove), -float("inf"))
    return scores


def _accepts_logits_to_keep(model: Any) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _static_cache(model: Any, max_len: int):
    from transformers import StaticCache

    return StaticCache(config=model.config, max_cache_len=max_len)


@torch.no_grad()
def lean_generate(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    spec: DecodeSpec,
    drop_finished: bool = True,
    cache: str = "dynamic",
    fused: bool = False,
    share_prompts: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample up to `max_new_tokens` after each left-padded row of input_ids [B, P] / attention_mask [B, P].

    Returns (tokens [B, n] long, log-probs [B, n] fp32), n <= max_new_tokens (the loop ends when all rows hit EOS);
    after a row's EOS its tokens are `pad_id` and its log-probs 0. `cache`: dynamic (the model's own growing
    cache) or static (transformers' StaticCache, preallocated to P + max_new_tokens; no row dropping). `fused`:
    decode steps by rollout/fused_decode.py where the model is a plain Qwen2/Llama (else the HF forward).
    Raises LeanUnsupported when the model returns no cache."""
    max_new_tokens, temperature, top_k, top_p, eos_id, pad_id = spec
    reason = unsupported_reason(model)
    if reason:
        raise LeanUnsupported(reason)
    dev = input_ids.device
    batch, width = input_ids.shape
    greedy = temperature == 0
    if cache == "static":
        drop_finished = False
    kwargs: dict[str, Any] = {"use_cache": True}
    if _accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = 1
    mask = attention_mask.to(dtype=torch.long)
    position = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)  # [B, P]
    past = _static_cache(model, width + max_new_tokens) if cache == "static" else None
    if cache == "static":
        full = torch.ones(batch, width + max_new_tokens, dtype=torch.long, device=dev)
        full[:, :width] = mask
        mask = full
    rows = None  # share_prompts: the prefill runs each distinct prompt row once (a group's G rows share one)
    if share_prompts and cache == "dynamic":
        uniq, inverse = torch.unique(torch.cat([input_ids, mask], 1), dim=0, return_inverse=True)
        if uniq.shape[0] < batch:
            rows = inverse
    pre_ids, pre_mask, pre_pos = (
        (input_ids, mask, position) if rows is None else (uniq[:, :width], uniq[:, width:], None)
    )
    if pre_pos is None:
        pre_pos = (pre_mask.cumsum(-1) - 1).masked_fill(pre_mask == 0, 0)
    out = model(
        input_ids=pre_ids,
        attention_mask=pre_mask if cache != "static" else pre_mask[:, :width],
        position_ids=pre_pos,
        past_key_values=past,
        **kwargs,
    )
    past = out.past_key_values
    if past is None:
        raise LeanUnsupported("the model's forward returned no past_key_values")
    logits = out.logits[:, -1].float()  # [B', V]
    if rows is not None:  # every row gets its prompt's cache and last logits
        past.batch_select_indices(rows)
        logits = logits[rows]
    decoder = None
    if fused and cache == "dynamic" and max_new_tokens > 1:
        from two_grpo.rollout.fused_decode import FusedDecoder, fused_reason

        if fused_reason(model) is None:
            decoder = FusedDecoder(model)
            decoder.load_prefill(past, mask, width + max_new_tokens)
    next_pos = position[:, -1:] + 1  # [B, 1]
    tokens = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=dev)
    logps = torch.zeros((batch, max_new_tokens), dtype=torch.float32, device=dev)
    active = torch.arange(batch, device=dev)  # rows in the forward batch (all rows unless drop_finished)
    unfinished = torch.ones(batch, dtype=torch.bool, device=dev)
    n = 0
    for t in range(max_new_tokens):
        if greedy:
            scores = logits
            chosen = scores.argmax(-1)
        else:
            scores = process_scores(logits, temperature, top_k, top_p)
            probs = scores.softmax(-1)
            if probs.shape[0] != batch:  # rows dropped: draw over the full batch, so RNG use matches generate's
                full_probs = torch.ones(batch, probs.shape[-1], dtype=probs.dtype, device=dev)
                full_probs[active] = probs
                chosen = torch.multinomial(full_probs, 1).squeeze(1)[active]
            else:
                chosen = torch.multinomial(probs, 1).squeeze(1)
        logp = torch.log_softmax(scores, -1).gather(-1, chosen[:, None]).squeeze(1)
        live = unfinished[active]
        tokens[active, t] = torch.where(live, chosen, pad_id)
        logps[active, t] = torch.where(live, logp, 0.0)
        n = t + 1
        unfinished[active] = live & (chosen != eos_id)
        if t + 1 == max_new_tokens or not bool(unfinished.any()):
            break
        step_ids = torch.where(live, chosen, pad_id)[:, None]  # [B', 1]: finished rows feed pad, as generate does
        if drop_finished:
            keep = unfinished[active]
            if not bool(keep.all()):
                idx = keep.nonzero().squeeze(1)
                decoder.select(idx) if decoder is not None else past.batch_select_indices(idx)
                active, mask, next_pos, step_ids = active[idx], mask[idx], next_pos[idx], step_ids[idx]
        next_pos_now = next_pos
        next_pos = next_pos + 1
        if decoder is not None:
            logits = decoder.step(step_ids[:, 0], next_pos_now[:, 0], width + t)
            continue
        if cache == "static":
            step_mask = mask[:, : width + t + 1]
        else:
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            step_mask = mask
        out = model(
            input_ids=step_ids, attention_mask=step_mask, position_ids=next_pos_now, past_key_values=past, **kwargs
        )
        past = out.past_key_values
        logits = out.logits[:, -1].float()
    return tokens[:, :n], logps[:, :n]
