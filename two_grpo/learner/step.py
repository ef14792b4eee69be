"""Forward pass and loss of one micro-batch, shared by every learner backend."""

from __future__ import annotations

from typing import Any

import torch

from two_grpo.algo.logprobs import token_entropy, token_logprobs
from two_grpo.algo.losses import policy_loss
from two_grpo.algo.pairwise import pairwise_loss
from two_grpo.algo.tis import mismatch_sums, tis_weight
from two_grpo.batch import TrainBatch
from two_grpo.config import AlgoConfig


def forward_logprobs(model: Any, batch: TrainBatch, temperature: float, with_entropy: bool = False):
    """Per-token log-probs [B, L-1] of the batch's own next tokens (and entropy [B, L-1] if asked)."""
    logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits[:, :-1]
    logp = token_logprobs(logits, batch.input_ids[:, 1:], temperature)
    return logp, (token_entropy(logits, temperature) if with_entropy else None)


def micro_batch_loss(
    model: Any, micro: TrainBatch, algo: AlgoConfig, temperature: float, minibatch_tokens: float, minibatch_seqs: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss of one micro-batch, normalised by its whole mini-batch (so micro-splits sum to the same loss)."""
    logp, entropy = forward_logprobs(model, micro, temperature, with_entropy=True)
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
    loss, metrics = policy_loss(
        logp,
        old,
        micro.adv,
        micro.loss_mask,
        clip=algo.clip,
        clip_low=algo.clip_low,
        clip_high=algo.clip_high,
        agg=algo.loss_agg,
        minibatch_tokens=minibatch_tokens,
        minibatch_seqs=minibatch_seqs,
        ref_logp=micro.ref_logp,
        kl_coef=algo.kl_coef,
        kl_estimator=algo.kl_estimator,
        entropy=entropy,
        entropy_coef=algo.entropy_coef,
        token_weight=weight,
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
