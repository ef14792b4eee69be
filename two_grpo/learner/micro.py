"""Micro-batch splitting for the learner: consecutive rows (the reference), or rows sorted by length so each
micro-batch is trimmed to a similar length and little compute goes to padding.

The per-token loss is already normalised by the whole mini-batch (`learner/step.py`), so the summed gradient does
not depend on which rows share a micro-batch; sorting only changes the fp32 summation order.
"""

from __future__ import annotations

import torch

from two_grpo.batch import TrainBatch


def micro_batches(
    batch: TrainBatch, rows: int, sort_by_length: bool, whole_groups: bool = False
) -> list[tuple[torch.Tensor, TrainBatch]]:
    """[(row indices [k], sub-batch trimmed to its longest row)], covering every row of `batch` once.

    `whole_groups`: every micro-batch holds whole groups (both rows of a pair, for algo.loss=pairwise); `rows`
    must then be a multiple of the group size."""
    n = len(batch)
    if whole_groups:
        order = group_order(batch, sort_by_length and n > rows)
    elif sort_by_length and n > rows:
        lengths = batch.attention_mask.sum(dim=1)  # [R]
        order = torch.sort(lengths, descending=True, stable=True).indices
    else:
        order = torch.arange(n)
    chunks = [order[i : i + rows] for i in range(0, n, rows)]
    return [(idx, batch.select(idx)) for idx in chunks]


def group_order(batch: TrainBatch, by_length: bool) -> torch.Tensor:
    """Row order [R] with each group's rows consecutive; groups by descending longest row when `by_length`."""
    _, inverse = torch.unique(batch.group_ids, return_inverse=True)  # [R] dense group index
    key = inverse.to(torch.float64)
    if by_length:
        lengths = batch.attention_mask.sum(dim=1).to(torch.float64)  # [R]
        longest = torch.zeros(int(inverse.max()) + 1, dtype=torch.float64).scatter_reduce_(0, inverse, lengths, "amax")
        key = -longest[inverse] * (inverse.numel() + 1) + key  # longest groups first, ties by group
    return torch.sort(key, stable=True).indices


def padded_tokens(batch: TrainBatch, rows: int, sort_by_length: bool) -> int:
    """Token slots (rows x trimmed length) the learner's forward passes cover; the rest of a padded batch is saved."""
    return sum(int(sub.input_ids.numel()) for _, sub in micro_batches(batch, rows, sort_by_length))
