"""Gradient noise across group sizes: a seeded count-sketch of the gradient, and the noise-scale estimators of
McCandlish et al. 2018 ("An Empirical Model of Large-Batch Training", App. A) from K disjoint sets: pure functions.

A mini-batch of B rollouts is split into K >= 2 disjoint sets of whole groups (b_k rollouts each); g_k [d] is
set k's own mean gradient and G = sum_k b_k g_k / B the mini-batch's. With per-rollout gradient covariance
Sigma, E|g_k|^2 = |G_true|^2 + tr(Sigma) / b_k, and

    S   = sum_k b_k |g_k - G|^2 / (K - 1)       unbiased for tr(Sigma) (pooled variance of weighted means)
    |G|^2_est = |G|^2 - S / B                   unbiased for |G_true|^2
    B_simple = S / |G|^2_est                     the gradient noise scale, in rollouts
    snr = |G|^2_est / (S / B) = B / B_simple    signal-to-noise of this mini-batch's gradient

The sketch maps a flat gradient [D] to [d] with a hashed index h(i) in [0, d) and sign s(i) = +-1
(count sketch): (Sx)_j = sum_{h(i)=j} s(i) x_i, so E|Sx|^2 = |x|^2 over the hash, and every quantity above
keeps its expectation at O(D) cost and d floats of memory. h and s are affine hashes of the coordinate index
(seeded), so nothing of size D is stored.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

_PRIME = 2_147_483_647  # 2^31 - 1


class CountSketch:
    """A fixed random projection R^D -> R^dims of a sequence of tensors (a model's gradients, in order)."""

    def __init__(self, dims: int = 4096, seed: int = 0):
        if dims < 1:
            raise ValueError(f"sketch dims must be >= 1 (got {dims})")
        g = torch.Generator().manual_seed(seed)
        self.dims = dims
        self.a, self.b, self.c, self.e = (int(x) for x in torch.randint(1, _PRIME - 1, (4,), generator=g))

    def project(self, tensors: Iterable[torch.Tensor]) -> torch.Tensor:
        """Sketch [dims] float64 of the concatenation of `tensors` (flattened, in order)."""
        out = torch.zeros(self.dims, dtype=torch.float64)
        offset = 0
        for t in tensors:
            flat = t.detach().reshape(-1).to("cpu", torch.float64)
            i = torch.arange(offset, offset + flat.numel(), dtype=torch.int64)
            bucket = ((i * self.a + self.b) % _PRIME) % self.dims
            sign = 1.0 - 2.0 * (((i * self.c + self.e) % _PRIME) % 2).to(torch.float64)
            out.index_add_(0, bucket, sign * flat)
            offset += flat.numel()
        return out


def noise_stats(set_grads: torch.Tensor, set_sizes: torch.Tensor) -> dict[str, float]:
    """Noise-scale estimates from K sets' own mean gradients.

    Args:
        set_grads: [K, d] each set's mean gradient (sketched or full), K >= 2.
        set_sizes: [K] rollouts in each set (b_k).

    Returns:
        `grad_noise/trace_cov` (S), `grad_noise/grad_sq` (|G|^2 estimate), `grad_noise/b_simple`, `grad_noise/snr`,
        `grad_noise/set_cos_mean` (mean cosine between distinct sets' gradients).
    """
    k = set_grads.shape[0]
    if k < 2:
        raise ValueError("noise_stats needs K >= 2 disjoint sets")
    g = set_grads.to(torch.float64)
    b = set_sizes.to(torch.float64)
    total = b.sum()
    mean = (b[:, None] * g).sum(0) / total  # [d]
    trace = float((b * ((g - mean) ** 2).sum(1)).sum() / (k - 1))
    grad_sq = float(mean.pow(2).sum()) - trace / float(total)
    unit = g / g.norm(dim=1, keepdim=True).clamp(min=1e-30)
    cos = unit @ unit.T  # [K, K]
    off_diag = (cos.sum() - cos.diagonal().sum()) / (k * (k - 1))
    return {
        "grad_noise/trace_cov": trace,
        "grad_noise/grad_sq": grad_sq,
        "grad_noise/b_simple": trace / grad_sq if grad_sq > 0 else float("inf"),
        "grad_noise/snr": grad_sq * float(total) / trace if trace > 0 else float("inf"),
        "grad_noise/set_cos_mean": float(off_diag),
    }


def cosine(x: torch.Tensor, y: torch.Tensor) -> float:
    """Cosine between two (sketched) gradients, e.g. this step's and a large-batch reference."""
    x, y = x.to(torch.float64), y.to(torch.float64)
    return float(x @ y / (x.norm() * y.norm()).clamp(min=1e-30))
