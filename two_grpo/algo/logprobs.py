"""Per-token log-probs and entropy of chosen tokens from logits: pure tensor functions.

Shapes: B sequences, T positions, V vocabulary, N scored tokens, H hidden size. Temperature divides the logits
first, so the learner scores tokens under the same distribution the sampler drew them from (verl/TRL do the same).

`token_logprobs` / `token_entropy` take full logits [B, T, V] (the reference). `chunked_head_logprobs` takes the
hidden states [N, H] of the scored tokens only and applies the output head to `chunk_tokens` of them at a time,
so at most one chunk of logits (and its fp32 copy) exists at once; under autograd each chunk is recomputed in
backward (torch.utils.checkpoint), so backward holds one chunk too.
"""

from __future__ import annotations

from typing import Any

import torch


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probability of `labels` [B, T] under `logits` [B, T, V] / temperature -> [B, T] float32."""
    scaled = logits.float() / temperature
    picked = torch.gather(scaled, -1, labels.unsqueeze(-1)).squeeze(-1)  # [B, T]
    return picked - torch.logsumexp(scaled, dim=-1)


def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of the next-token distribution, logits [B, T, V] -> [B, T] float32 (no grad)."""
    with torch.no_grad():
        logp = torch.log_softmax(logits.float() / temperature, dim=-1)
        return -(logp.exp() * logp).sum(-1)


def logprob_entropy(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float, entropy: bool, entropy_grad: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One chunk: logits [N, V] (any float dtype), labels [N] -> log-probs [N] fp32, entropy [N] fp32 or None.

    One fp32 copy of the chunk (plus log-softmax and its exp for the entropy), the entropy with gradient only when
    `entropy_grad` (an entropy bonus in the loss), else computed without autograd (a logged metric)."""
    scaled = logits.float()
    if temperature != 1.0:
        scaled = scaled / temperature
    lse = torch.logsumexp(scaled, dim=-1)  # [N]
    logp = scaled.gather(-1, labels.unsqueeze(-1)).squeeze(-1) - lse
    if not entropy:
        return logp, None
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):
        z, m = (scaled, lse) if entropy_grad else (scaled.detach(), lse.detach())
        log_p = z - m.unsqueeze(-1)  # [N, V]; summing p * log p (not lse - sum p * z) keeps fp32 precision
        ent = -(log_p.exp() * log_p).sum(-1)
    return logp, ent


def chunked_head_logprobs(
    hidden: torch.Tensor,
    labels: torch.Tensor,
    head: Any,  # callable: hidden [n, H] -> logits [n, V] (the output embedding module)
    temperature: float = 1.0,
    chunk_tokens: int = 0,
    entropy: bool = False,
    entropy_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs [N] (and entropy [N]) of `labels` [N] under `head(hidden)` [N, V], `chunk_tokens` rows at a time.

    `chunk_tokens` <= 0: one chunk. With autograd on, each chunk runs under torch.utils.checkpoint (its logits
    are recomputed in backward instead of kept), so peak memory follows the chunk, not N x V."""
    n = int(hidden.shape[0])
    step = chunk_tokens if chunk_tokens > 0 else max(n, 1)
    use_ckpt = torch.is_grad_enabled() and hidden.requires_grad and n > step

    def run(h: torch.Tensor, y: torch.Tensor):
        return logprob_entropy(head(h), y, temperature, entropy, entropy_grad)

    logps, ents = [], []
    for start in range(0, n, step):
        h, y = hidden[start : start + step], labels[start : start + step]
        if use_ckpt:
            from torch.utils.checkpoint import checkpoint

            lp, ent = checkpoint(run, h, y, use_reentrant=False)
        else:
            lp, ent = run(h, y)
        logps.append(lp)
        ents.append(ent)
    if not logps:
        empty = hidden.new_zeros((0,), dtype=torch.float32)
        return empty, (empty if entropy else None)
    logp = torch.cat(logps) if len(logps) > 1 else logps[0]
    if not entropy:
        return logp, None
    return logp, (torch.cat(ents) if len(ents) > 1 else ents[0])
