"""Train/inference mismatch and truncated importance sampling (TIS): pure tensor functions.

The rollout engine (vLLM) samples with its own kernels, so its log-probs `behav_logp` of the sampled tokens
differ slightly from the learner's `learner_logp` at the same weights (bf16 engines: ~1e-3 mean). TIS
(Yao et al., "Your efficient RL framework secretly brings you off-policy RL training", 2025) corrects the
policy gradient for that gap with a per-token weight min(pi_learner / pi_engine, cap), no gradient through it.

Shapes: B rollouts, T token positions; per-token tensors are [B, T] with `mask` [B, T] (1 on response tokens).
"""

from __future__ import annotations

import torch


def tis_weight(learner_logp: torch.Tensor, behav_logp: torch.Tensor, cap: float) -> torch.Tensor:
    """[B, T] min(exp(learner_logp - behav_logp), cap), detached."""
    return torch.exp(learner_logp.detach() - behav_logp).clamp(max=cap)


def mismatch_sums(learner_logp: torch.Tensor, behav_logp: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """|learner_logp - behav_logp| over response tokens: a token sum (`*_sum`, the caller divides by the token
    count) and a max (`*_max`, the caller takes the max over micro-batches)."""
    diff = (learner_logp.detach() - behav_logp).abs() * mask
    return {
        "rollout/logprob_diff_mean_sum": diff.sum(),
        "rollout/logprob_diff_max": diff.max() if diff.numel() else torch.zeros(()),
    }
