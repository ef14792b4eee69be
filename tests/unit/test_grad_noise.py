"""Gradient-noise estimators (algo/grad_noise.py) on a linear model with known gradient covariance:
pytest tests/unit/test_grad_noise.py"""

from __future__ import annotations

import pytest
import torch

from two_grpo.algo.grad_noise import CountSketch, cosine, noise_stats


def linear_problem(dim: int, sigma: float, seed: int):
    """Least squares at w = 0 with x ~ N(0, I), y = w*.x + noise: the per-example gradient g = (w.x - y) x has
    mean delta = w - w* and covariance (|delta|^2 + sigma^2) I + delta delta^T (Isserlis), so
    tr(Sigma) = dim (|delta|^2 + sigma^2) + |delta|^2 and |E g|^2 = |delta|^2."""
    g = torch.Generator().manual_seed(seed)
    w_star = torch.randn(dim, generator=g, dtype=torch.float64) * 0.3
    delta = -w_star
    trace = dim * (delta.pow(2).sum() + sigma**2) + delta.pow(2).sum()
    return w_star, float(trace), float(delta.pow(2).sum())


def set_gradients(w_star, sigma, set_sizes, gen):
    """Each set's mean gradient of 0.5 (w.x - y)^2 at w = 0, by autograd."""
    w = torch.zeros_like(w_star, requires_grad=True)
    grads = []
    for b in set_sizes:
        x = torch.randn(b, len(w_star), generator=gen, dtype=torch.float64)
        y = x @ w_star + sigma * torch.randn(b, generator=gen, dtype=torch.float64)
        loss = 0.5 * ((x @ w - y) ** 2).mean()
        (grad,) = torch.autograd.grad(loss, w)
        grads.append(grad)
    return torch.stack(grads)


@pytest.mark.parametrize("sketch_dims", [0, 256])
def test_recovers_trace_of_covariance(sketch_dims):
    dim, sigma = 64, 0.5
    w_star, trace, grad_sq = linear_problem(dim, sigma, seed=0)
    gen = torch.Generator().manual_seed(1)
    sizes = [8, 8, 8, 8]
    sketch = CountSketch(sketch_dims, seed=5) if sketch_dims else None
    traces, sqs = [], []
    for _ in range(300):
        grads = set_gradients(w_star, sigma, sizes, gen)
        if sketch is not None:
            grads = torch.stack([sketch.project([row]) for row in grads])
        stats = noise_stats(grads, torch.tensor(sizes))
        traces.append(stats["grad_noise/trace_cov"])
        sqs.append(stats["grad_noise/grad_sq"])
    mean_trace = sum(traces) / len(traces)
    assert mean_trace == pytest.approx(trace, rel=0.10)
    assert sum(sqs) / len(sqs) == pytest.approx(grad_sq, rel=0.25)


def test_unequal_set_sizes_stay_unbiased():
    w_star, trace, _ = linear_problem(32, 1.0, seed=2)
    gen = torch.Generator().manual_seed(3)
    sizes = [4, 12, 8]
    est = [noise_stats(set_gradients(w_star, 1.0, sizes, gen), torch.tensor(sizes))["grad_noise/trace_cov"]
           for _ in range(400)]  # fmt: skip
    assert sum(est) / len(est) == pytest.approx(trace, rel=0.10)


def test_by_hand():
    # two sets of 1: g = (1, 0), (0, 1); G = (0.5, 0.5); S = 1*0.5 + 1*0.5 = 1; |G|^2 = 0.5 - 1/2 = 0; cos = 0
    s = noise_stats(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1, 1]))
    assert s["grad_noise/trace_cov"] == pytest.approx(1.0)
    assert s["grad_noise/grad_sq"] == pytest.approx(0.0)
    assert s["grad_noise/set_cos_mean"] == pytest.approx(0.0)
    # identical sets: no noise, cosine 1, infinite signal-to-noise
    s = noise_stats(torch.tensor([[3.0, 4.0], [3.0, 4.0]]), torch.tensor([2, 2]))
    assert (s["grad_noise/trace_cov"], s["grad_noise/grad_sq"], s["grad_noise/set_cos_mean"]) == (0.0, 25.0, 1.0)
    assert s["grad_noise/snr"] == float("inf")
    with pytest.raises(ValueError, match="K >= 2"):
        noise_stats(torch.ones(1, 3), torch.tensor([4]))


def test_sketch_preserves_norms_in_expectation_and_is_deterministic():
    x = torch.randn(5000, dtype=torch.float64)
    norms = [
        float(CountSketch(512, seed=s).project([x[:3000], x[3000:].reshape(40, 50)]).pow(2).sum()) for s in range(200)
    ]
    assert sum(norms) / len(norms) == pytest.approx(float(x.pow(2).sum()), rel=0.02)
    a = CountSketch(512, seed=7).project([x])
    assert torch.equal(a, CountSketch(512, seed=7).project([x[:10], x[10:]]))  # split-invariant, same seed
    assert cosine(a, a) == pytest.approx(1.0)
