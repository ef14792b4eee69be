"""Per-token log-probs and entropy of chosen tokens from logits: pure tensor functions.

Shapes: B sequences, T positions, V vocabulary. Temperature divides the logits first, so the learner scores
tokens under the same distribution the sampler drew them from (verl/TRL do the same).
"""

from __future__ import annotations

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
