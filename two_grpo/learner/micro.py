"""Micro-batch splitting for the learner: consecutive rows (the reference), or rows sorted by length so each
micro-batch is trimmed to a similar length and little compute goes to padding.

The per-token loss is already normalised by the whole mini-batch (`learner/step.py`), so the summed gradient does
not depend on which rows share a micro-batch; sorting, or cutting by a token budget (`micro_tokens`, so one long
row does not pad its neighbours), only changes the fp32 summation order.
"""

from __future__ import annotations

import torch

from two_grpo.batch import TrainBatch


def micro_batches(
    batch: TrainBatch, rows: int, sort_by_length: bool, max_tokens: int = 0
) -> list[tuple[torch.Tensor, TrainBatch]]:
    """[(row indices [k], sub-batch trimmed to its longest row)], covering every row of `batch` once.

    At most `rows` rows per micro-batch and, when `max_tokens` > 0, at most `max_tokens` padded slots
    (k x longest row); a row longer than `max_tokens` goes alone."""
    n = len(batch)
    lengths = batch.attention_mask.sum(dim=1).clamp(min=2)  # [R]; select() trims to >= 2 columns
    if sort_by_length and (n > rows or max_tokens > 0):
        order = torch.sort(lengths, descending=True, stable=True).indices
    else:
        order = torch.arange(n)
    return [(idx, batch.select(idx)) for idx in _pack(order, lengths, rows, max_tokens)]


def _pack(order: torch.Tensor, lengths: torch.Tensor, rows: int, max_tokens: int) -> list[torch.Tensor]:
    """Cut `order` into consecutive runs of <= `rows` rows and (max_tokens > 0) <= max_tokens padded slots."""
    if max_tokens <= 0:
        return [order[i : i + rows] for i in range(0, len(order), rows)]
    chunks, start, longest = [], 0, 0
    for i, row in enumerate(order.tolist()):
        longest_with = max(longest, int(lengths[row]))
        if i > start and (i - start >= rows or (i - start + 1) * longest_with > max_tokens):
            chunks.append(order[start:i])
            start, longest_with = i, int(lengths[row])
        longest = longest_with
    if len(order):
        chunks.append(order[start:])
    return chunks


def padded_tokens(batch: TrainBatch, rows: int, sort_by_length: bool, max_tokens: int = 0) -> int:
    """Token slots (rows x trimmed length) the learner's forward passes cover; the rest of a padded batch is saved."""
    return sum(int(sub.input_ids.numel()) for _, sub in micro_batches(batch, rows, sort_by_length, max_tokens))
