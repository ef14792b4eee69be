"""Clipped policy-gradient loss, KL estimators and token aggregation: pure tensor functions.

Shapes: B rollouts in a micro-batch, T token positions; all per-token tensors are [B, T] with `mask` [B, T]
(1 on response tokens). Deviations from textbook GRPO (DeepSeekMath):
- separate `clip_low` / `clip_high` (DAPO clip-higher, arXiv 2503.14476); `clip=False` gives the plain
  importance-weighted policy gradient (the paper's no-clipping analysis);
- KL to a reference is off by default (`kl_coef=0`, as in the paper); k1 = log(pi/pi_ref),
  k3 = exp(ref-logp) - (ref-logp) - 1 (Schulman's unbiased, non-negative estimator);
- aggregation: `token_mean` sums over all tokens of the mini-batch / its token count (DAPO);
  `seq_mean_token_mean` averages each sequence's token-mean over sequences (the paper's Eq. 14, GRPO);
  `seq_mean_token_sum` averages each sequence's token-sum over sequences (Dr. GRPO-like).

The normaliser (`minibatch_tokens`, `minibatch_seqs`) is that of the whole optimizer mini-batch, fixed before
it is split into micro-batches: summing the micro-batch losses gives exactly the mini-batch loss, so the
micro-batch split does not change the gradient.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

AGGREGATIONS = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum")


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, estimator: str) -> torch.Tensor:
    """Per-token KL(pi || pi_ref) estimate [B, T] from log-probs of the sampled tokens."""
    log_ratio = logp - ref_logp
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.exp(-log_ratio) + log_ratio - 1.0
    raise ValueError(f"unknown kl estimator {estimator!r}; use k1 or k3")


def aggregate(
    values: torch.Tensor, mask: torch.Tensor, mode: str, minibatch_tokens: float, minibatch_seqs: float
) -> torch.Tensor:
    """Reduce per-token `values` [B, T] to a scalar share of the mini-batch loss.

    Args:
        values: [B, T] per-token loss terms.
        mask: [B, T] 1 on response tokens.
        mode: one of AGGREGATIONS.
        minibatch_tokens: response tokens in the whole optimizer mini-batch (token_mean).
        minibatch_seqs: sequences in the whole optimizer mini-batch (seq_mean_*).
    """
    masked = values * mask
    if mode == "token_mean":
        return masked.sum() / max(minibatch_tokens, 1.0)
    seq_sum = masked.sum(dim=1)  # [B]
    if mode == "seq_mean_token_mean":
        return (seq_sum / mask.sum(dim=1).clamp(min=1)).sum() / max(minibatch_seqs, 1.0)
    if mode == "seq_mean_token_sum":
        return seq_sum.sum() / max(minibatch_seqs, 1.0)
    raise ValueError(f"unknown loss aggregation {mode!r}; use one of {AGGREGATIONS}")


class LossOptions(NamedTuple):
    """The scalars of `policy_loss` (immutable): the mini-batch normaliser (fixed before the micro-split) and the
    knobs. A NamedTuple, so algo/ still imports nothing beyond torch and typing.

    minibatch_tokens / minibatch_seqs: response tokens / sequences of the whole optimizer mini-batch.
    clip, clip_low, clip_high: the PPO clip range (clip=False: plain importance weighting). agg: one of
    AGGREGATIONS. kl_coef, kl_estimator ("k1" | "k3"): the KL term (off at 0). entropy_coef: entropy bonus.
    """

    minibatch_tokens: float
    minibatch_seqs: float
    clip: bool = True
    clip_low: float = 0.2
    clip_high: float = 0.28
    agg: str = "token_mean"
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    entropy_coef: float = 0.0

    @classmethod
    def from_algo(cls, algo: Any, minibatch_tokens: float, minibatch_seqs: float) -> LossOptions:
        """From the run's `cfg.algo` (any object with its fields) and one mini-batch's normaliser."""
        return cls(
            minibatch_tokens,
            minibatch_seqs,
            clip=algo.clip,
            clip_low=algo.clip_low,
            clip_high=algo.clip_high,
            agg=algo.loss_agg,
            kl_coef=algo.kl_coef,
            kl_estimator=algo.kl_estimator,
            entropy_coef=algo.entropy_coef,
        )


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    opts: LossOptions,
    *,
    ref_logp: torch.Tensor | None = None,
    entropy: torch.Tensor | None = None,
    token_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-clip surrogate loss for one micro-batch (to be minimised).

    Args:
        logp: [B, T] log-probs of the sampled tokens under the current policy (with grad).
        old_logp: [B, T] log-probs under the policy that sampled (no grad).
        adv: [B] sequence advantage, broadcast to every token.
        mask: [B, T] response-token mask (float).
        opts: the normaliser and the knobs (LossOptions).
        ref_logp: [B, T] reference-policy log-probs, needed when kl_coef > 0.
        entropy: [B, T] per-token entropy (for logging; used in the loss when entropy_coef > 0).
        token_weight: [B, T] detached per-token weight of the policy term (truncated IS, algo/tis.py).

    Returns:
        loss (scalar, this micro-batch's share of the mini-batch loss) and metric sums over its tokens
        (`*_sum` tensors, detached) that the caller divides by the mini-batch token count.
    """
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)  # [B, T]
    a = adv.to(logp.dtype).unsqueeze(1)  # [B, 1]
    surr = ratio * a
    clip_low, clip_high, agg = opts.clip_low, opts.clip_high, opts.agg
    minibatch_tokens, minibatch_seqs = opts.minibatch_tokens, opts.minibatch_seqs
    if opts.clip:
        surr_clipped = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * a
        per_token = -torch.minimum(surr, surr_clipped)  # [B, T]
        clipped = (surr_clipped < surr).to(logp.dtype)  # the clipped branch was taken (no gradient)
        clip_low_hit = clipped * (ratio < 1.0 - clip_low).to(logp.dtype)
        clip_high_hit = clipped * (ratio > 1.0 + clip_high).to(logp.dtype)
    else:
        per_token = -surr
        clip_low_hit = clip_high_hit = torch.zeros_like(per_token)
    if token_weight is not None:
        per_token = per_token * token_weight
    loss = aggregate(per_token, mask, agg, minibatch_tokens, minibatch_seqs)
    metrics: dict[str, torch.Tensor] = {
        "loss/policy": loss.detach(),
        "loss/clip_frac_low_sum": (clip_low_hit * mask).sum().detach(),
        "loss/clip_frac_high_sum": (clip_high_hit * mask).sum().detach(),
        "loss/ratio_mean_sum": (ratio * mask).sum().detach(),
    }
    if opts.kl_coef > 0:
        if ref_logp is None:
            raise ValueError("kl_coef > 0 needs ref_logp")
        kl = kl_penalty(logp, ref_logp, opts.kl_estimator)  # [B, T]
        kl_loss = aggregate(kl, mask, agg, minibatch_tokens, minibatch_seqs)
        loss = loss + opts.kl_coef * kl_loss
        metrics["loss/kl"] = kl_loss.detach()
    if entropy is not None:
        metrics["loss/entropy_sum"] = (entropy * mask).sum().detach()
        if opts.entropy_coef > 0:
            loss = loss - opts.entropy_coef * aggregate(entropy, mask, agg, minibatch_tokens, minibatch_seqs)
    return loss, metrics
