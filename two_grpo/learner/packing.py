"""Padding-free micro-batches (`learner.padding_free`): the rows of a right-padded micro-batch packed end to end
into a few long sequences, `position_ids` restarting at 0 at each row.

With `attention_mask=None` and such position ids, transformers (>= 4.53; 5.x here) builds a block-diagonal causal
mask itself (`masking_utils.find_packed_sequence_indices`), for the eager and sdpa kernels on CPU as on GPU, so a
token attends to the earlier tokens of its own row only and sees the same positions (RoPE) as in the padded
layout: the same log-probs to fp32 rounding (tests/unit/test_packing.py). No compute goes to padding in the
linear layers; attention is computed over each packed sequence's whole square under the mask (no varlen kernel
on CPU), so `pack_tokens` caps a packed sequence's length to bound that cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Packed:
    input_ids: torch.Tensor  # [S, T] int64: S packed sequences, each rows end to end, then padding
    position_ids: torch.Tensor  # [S, T] int64: 0.. per row (the tail padding counts as one more row)
    row_seq: torch.Tensor  # [R] which packed sequence row r went to
    row_offset: torch.Tensor  # [R] where row r starts in it

    def index(self, rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sequence, position) in the packed layout of padded positions (rows [N], cols [N])."""
        return self.row_seq[rows], self.row_offset[rows] + cols


def pack(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, pack_tokens: int = 0, pad_id: int = 0, multiple: int = 1
) -> Packed:
    """Pack the rows of right-padded `input_ids` [R, L] (`attention_mask` [R, L] a prefix of ones per row).

    `pack_tokens` > 0: at most that many tokens per packed sequence (a longer row goes alone), rows placed first-fit
    in descending length; 0: every row in one sequence, in order (TRL's padding_free). `multiple`: the packed
    length is rounded up to a multiple of it (learner.compile)."""
    lengths = attention_mask.sum(dim=1).clamp(min=1)  # [R]
    n = int(input_ids.shape[0])
    prefix = torch.arange(attention_mask.shape[1], device=attention_mask.device)[None] < lengths[:, None]
    if n and not bool((prefix == attention_mask.bool()).all()):
        raise ValueError("padding_free needs right-padded rows (attention_mask a prefix of ones)")
    if pack_tokens <= 0 and n and bool((attention_mask.sum(dim=1) > 0).all()):  # one sequence, vectorised
        keep = attention_mask.bool()
        total = int(keep.sum())
        width = total + (-total % multiple)
        ids = torch.full((1, width), pad_id, dtype=input_ids.dtype, device=input_ids.device)
        pos = torch.arange(width, device=input_ids.device)[None] - total  # the tail: a row of its own, from 0
        ids[0, :total] = input_ids[keep]  # row-major: the rows end to end, in order
        pos[0, :total] = (attention_mask.cumsum(dim=1) - 1)[keep]
        row_offset = torch.cumsum(lengths, 0) - lengths
        return Packed(ids, pos, torch.zeros(n, dtype=torch.long, device=input_ids.device), row_offset)
    lens = [int(x) for x in lengths]
    if pack_tokens <= 0:
        bins = [list(range(n))]
    else:
        order = sorted(range(n), key=lambda i: -lens[i])
        bins, room = [], []
        for i in order:
            for b, free in enumerate(room):
                if lens[i] <= free:
                    bins[b].append(i)
                    room[b] -= lens[i]
                    break
            else:
                bins.append([i])
                room.append(pack_tokens - lens[i])
    width = max(sum(lens[i] for i in b) for b in bins) if n else 1
    width += -width % multiple
    ids = torch.full((len(bins), width), pad_id, dtype=input_ids.dtype, device=input_ids.device)
    pos = torch.zeros((len(bins), width), dtype=torch.long, device=input_ids.device)
    row_seq = torch.zeros(n, dtype=torch.long, device=input_ids.device)
    row_offset = torch.zeros(n, dtype=torch.long, device=input_ids.device)
    for s, b in enumerate(bins):
        at = 0
        for i in b:
            k = lens[i]
            ids[s, at : at + k] = input_ids[i, :k]
            pos[s, at : at + k] = torch.arange(k, device=input_ids.device)
            row_seq[i], row_offset[i] = s, at
            at += k
        pos[s, at:] = torch.arange(width - at, device=input_ids.device)  # the tail: a row of its own
    return Packed(ids, pos, row_seq, row_offset)
