"""`diagnostics.grad_noise=true`: split each optimizer mini-batch into K disjoint sets of whole groups, sketch
each set's share of the accumulated gradient (algo/grad_noise.py), and turn the K sketches into noise-scale
metrics. The summed gradient is the same one the step applies, so training changes only by summation order.
With a reference set (`set_reference`, two_grpo/run/noise_reference.py) the step also logs `grad_noise/ref_cos`.

Units: a set's own mean gradient is its share of the mini-batch gradient divided by its share of the loss
normaliser (tokens for `token_mean`, rollouts otherwise), so the mini-batch gradient is their weighted mean.
`grad_noise/b_simple` is reported in rollouts (for `token_mean` the token-weighted estimate divided by the
mini-batch's mean response tokens per rollout).
"""

from __future__ import annotations

from typing import Any

import torch

from two_grpo.algo.grad_noise import CountSketch, cosine, noise_stats
from two_grpo.data.batch import TrainBatch


class GradNoiseProbe:
    def __init__(self, sets: int, dims: int, seed: int, algo: Any):
        self.k, self.sketch = sets, CountSketch(dims, seed)
        self.reference: torch.Tensor | None = None  # sketch of a large-batch gradient, for the next step
        self.token_weighted = algo.loss_agg == "token_mean" and algo.loss != "pairwise"
        self._reset()

    def _reset(self) -> None:
        self.prev: torch.Tensor | None = None
        self.own: list[torch.Tensor] = []
        self.weights: list[float] = []
        self.rows = self.tokens = 0.0

    def sets(self, mb: TrainBatch) -> list[TrainBatch]:
        """K sub-batches of whole groups (group i goes to set i mod K, in order of group id)."""
        _, inverse = torch.unique(mb.group_ids, return_inverse=True)  # [R]
        parts = [torch.nonzero(inverse % self.k == s).squeeze(1) for s in range(self.k)]
        return [mb.select(idx) for idx in parts if len(idx)]

    def after_set(self, part: TrainBatch, params: list[torch.Tensor], n_tok: float, n_seq: float) -> None:
        """Called after a set's backward passes: its share = accumulated sketch minus the previous one."""
        total = self.sketch.project(p.grad if p.grad is not None else torch.zeros_like(p) for p in params)
        share = total - self.prev if self.prev is not None else total
        self.prev = total
        weight = part.n_tokens if self.token_weighted else float(len(part))
        scale = (n_tok if self.token_weighted else n_seq) / max(weight, 1e-12)
        self.own.append(share * scale)  # the set's own mean gradient (sketched)
        self.weights.append(weight)
        self.rows += len(part)
        self.tokens += part.n_tokens

    def set_reference(self, params: list[torch.Tensor]) -> None:
        """Sketch the gradients now in `params` as the reference the next step's gradient is compared with."""
        self.reference = self.sketch.project(p.grad if p.grad is not None else torch.zeros_like(p) for p in params)

    def finish(self) -> dict[str, float]:
        """Noise metrics of this optimizer step (empty when fewer than 2 sets had rows)."""
        out: dict[str, float] = {}
        if len(self.own) >= 2:
            out = noise_stats(torch.stack(self.own), torch.tensor(self.weights))
            per_rollout = self.tokens / self.rows if self.token_weighted and self.rows else 1.0
            out["grad_noise/b_simple"] /= per_rollout  # tokens -> rollouts
            out["grad_noise/tokens_per_rollout"] = per_rollout  # the loss unit of trace_cov / grad_sq, in rollouts
            out["grad_noise/sets"] = float(len(self.own))
        if self.reference is not None and self.prev is not None:  # prev: the whole mini-batch's gradient
            out["grad_noise/ref_cos"] = cosine(self.prev, self.reference)
        self.reference = None
        self._reset()
        return out
