"""The DPO form of 2-GRPO as a loss ("It Takes Two", arXiv 2510.00977, §3 and v2 Eq. 14): pure tensor functions.

For a group of G = 2 with unequal rewards, o+ the rewarded completion and o- the other, the margin is the
difference of their length-normalised log-ratios to the sampling policy,

    m = mean_t (log pi(o+_t) - log pi_old(o+_t)) - mean_t (log pi(o-_t) - log pi_old(o-_t)),

and the loss is the logistic (DPO) loss on it, scaled by 1/beta so that its gradient keeps GRPO's size and
shifted by its on-policy value so that it reads 0 at m = 0 (and about -m/2 for small beta):

    L = (softplus(-beta * m) - log 2) / beta = -(log sigmoid(beta * m) + log 2) / beta,   dL/dm = -sigmoid(-beta * m).

On-policy m = 0, so dL/dm = -1/2 for every beta, which is exactly 2-GRPO's gradient with advantages +-1
(`sign`, or the population std) and `seq_mean_token_mean` aggregation without clipping; with the sample std
(advantages +-0.7071) GRPO's gradient is 0.7071 times this one. Off-policy the two agree to first order in
beta * m and in the log-ratios. Pairs with equal rewards carry no signal: they add 0 to the loss, and count in
the normaliser (`minibatch_pairs`), as zero-advantage groups count in GRPO's mean over rollouts.

Shapes: B rows of one micro-batch holding whole pairs (both rows of every group), T positions; per-token
tensors [B, T], `rewards` and `group_ids` [B].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def pair_rows(rewards: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row indices of each pair's rewarded (`pos`) and other (`neg`) row, and whether the pair has signal.

    Returns:
        pos [N], neg [N] int64 row indices, signal [N] bool (rewards differ), for the N groups in the batch.
    """
    ids, inverse, counts = torch.unique(group_ids, return_inverse=True, return_counts=True)
    if bool((counts != 2).any()):
        bad = ids[counts != 2][0].item()
        raise ValueError(f"pairwise loss needs groups of exactly 2 rows in the micro-batch (group {bad} is not)")
    order = torch.argsort(inverse, stable=True)  # rows sorted by group: pairs are consecutive
    a, b = order[0::2], order[1::2]  # [N]
    a_wins = rewards[a] >= rewards[b]
    pos, neg = torch.where(a_wins, a, b), torch.where(a_wins, b, a)
    return pos, neg, rewards[a] != rewards[b]


def pairwise_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    mask: torch.Tensor,
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    *,
    beta: float,
    minibatch_pairs: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logistic loss on the log-ratio margin of each G=2 pair, this micro-batch's share of the mini-batch loss.

    Args:
        logp: [B, T] log-probs of the sampled tokens under the current policy (with grad).
        old_logp: [B, T] log-probs under the sampling policy (no grad).
        mask: [B, T] response-token mask.
        rewards: [B] rewards; group_ids: [B] (every group has exactly two rows here).
        beta: > 0, the DPO temperature of the margin.
        minibatch_pairs: pairs in the whole optimizer mini-batch (tied pairs included).

    Returns:
        loss (scalar) and detached metric sums: `loss/pairs_signal`, `loss/pairs_tied`, `loss/pair_margin_total`
        (over signal pairs) and `loss/policy`.
    """
    if beta <= 0:
        raise ValueError(f"pairwise loss needs beta > 0 (got {beta})")
    mask = mask.to(logp.dtype)
    seq_logratio = ((logp - old_logp) * mask).sum(1) / mask.sum(1).clamp(min=1)  # [B]
    pos, neg, signal = pair_rows(rewards, group_ids)
    margin = seq_logratio[pos] - seq_logratio[neg]  # [N]
    per_pair = (F.softplus(-beta * margin) - math.log(2.0)) / beta * signal.to(logp.dtype)  # [N]; tied pairs: 0
    loss = per_pair.sum() / max(minibatch_pairs, 1.0)
    n_signal = signal.sum()
    return loss, {
        "loss/policy": loss.detach(),
        "loss/pairs_signal": n_signal.detach().to(logp.dtype),
        "loss/pairs_tied": (~signal).sum().detach().to(logp.dtype),
        "loss/pair_margin_total": (margin * signal).sum().detach(),
    }
