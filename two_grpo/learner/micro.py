"""Micro-batch splitting for the learner: consecutive rows (the reference), or rows sorted by length so each
micro-batch is trimmed to a similar length and little compute goes to padding.

The per-token loss is already normalised by the whole mini-batch (`learner/step.py`), so the summed gradient does
not depend on which rows share a micro-batch; sorting, or cutting by a token budget (`micro_tokens`, so one long
row does not pad its neighbours), only changes the fp32 summation order.
"""

from __future__ import annotations

import torch

from two_grpo.data.batch import TrainBatch


def micro_batches(
    batch: TrainBatch, rows: int, sort_by_length: bool, max_tokens: int = 0, whole_groups: bool = False
) -> list[tuple[torch.Tensor, TrainBatch]]:
    """[(row indices [k], sub-batch trimmed to its longest row)], covering every row of `batch` once.

    At most `rows` rows per micro-batch and, when `max_tokens` > 0, at most `max_tokens` padded slots
    (k x longest row); a row longer than `max_tokens` goes alone. `whole_groups`: a group's rows always share
    a micro-batch (both rows of a pair, for algo.loss=pairwise); a group larger than the limits goes alone."""
    n = len(batch)
    reorder = sort_by_length and (n > rows or max_tokens > 0)
    if not (reorder or max_tokens > 0 or whole_groups):  # consecutive rows: the reference split
        return [(idx, batch.select(idx)) for idx in (torch.arange(i, min(i + rows, n)) for i in range(0, n, rows))]
    lengths = batch.attention_mask.sum(dim=1).clamp(min=2)  # [R]; select() trims to >= 2 columns
    if whole_groups:
        units = group_units(batch, lengths, reorder)
    else:
        order = torch.sort(lengths, descending=True, stable=True).indices if reorder else torch.arange(n)
        if max_tokens <= 0:
            return [(idx, batch.select(idx)) for idx in (order[i : i + rows] for i in range(0, n, rows))]
        units = [order[i : i + 1] for i in range(n)]
    return [(idx, batch.select(idx)) for idx in _pack(units, lengths, rows, max_tokens)]


def group_units(batch: TrainBatch, lengths: torch.Tensor, by_length: bool) -> list[torch.Tensor]:
    """Each group's row indices, groups by descending longest row when `by_length`, else in order of first
    appearance (so a batch whose groups are consecutive keeps its row order)."""
    ids, inverse = torch.unique(batch.group_ids, return_inverse=True)  # [R] dense group index
    units = [torch.nonzero(inverse == g).squeeze(1) for g in range(len(ids))]
    units.sort(key=lambda u: int(u[0]))
    if by_length:
        units.sort(key=lambda u: -int(lengths[u].max()))  # stable: ties keep group order
    return units


def _pack(units: list[torch.Tensor], lengths: torch.Tensor, rows: int, max_tokens: int) -> list[torch.Tensor]:
    """Join consecutive units (rows or whole groups) into chunks of <= `rows` rows and (max_tokens > 0)
    <= max_tokens padded slots; a unit over either limit goes alone."""
    chunks: list[torch.Tensor] = []
    cur: list[torch.Tensor] = []
    cur_rows = longest = 0
    for unit in units:
        k, unit_len = len(unit), int(lengths[unit].max())
        longest_with = max(longest, unit_len)
        if cur and (cur_rows + k > rows or (max_tokens > 0 and (cur_rows + k) * longest_with > max_tokens)):
            chunks.append(torch.cat(cur))
            cur, cur_rows, longest_with = [], 0, unit_len
        cur.append(unit)
        cur_rows += k
        longest = longest_with
    if cur:
        chunks.append(torch.cat(cur))
    return chunks


def padded_tokens(batch: TrainBatch, rows: int, sort_by_length: bool, max_tokens: int = 0) -> int:
    """Token slots (rows x trimmed length) the learner's forward passes cover; the rest of a padded batch is saved."""
    return sum(int(sub.input_ids.numel()) for _, sub in micro_batches(batch, rows, sort_by_length, max_tokens))
