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

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from two_grpo.learner.segment_attention import Segments, segments_on


@dataclass(frozen=True)
class Layout:
    """How the learner lays out a micro-batch for the model: padded rows (`pack_tokens` None), or rows packed into
    sequences of at most `pack_tokens` tokens (0: one sequence), `shared_prefix`: around one copy of each shared
    prompt (learner/prefix_sharing.py). `pad_multiple` > 1: the input length padded up to a multiple of it."""

    pack_tokens: int | None = None
    pad_multiple: int = 1
    shared_prefix: bool = False
    segment_attention: bool = (
        False  # packed: attention by segments where the model allows (learner/segment_attention.py)
    )


@dataclass
class Packed:
    input_ids: torch.Tensor  # [S, T] int64: S packed sequences, each rows end to end, then padding
    position_ids: torch.Tensor  # [S, T] int64: 0.. per row (the tail padding counts as one more row)
    row_seq: torch.Tensor  # [R] which packed sequence row r went to
    row_offset: torch.Tensor  # [R] where row r starts in it (learner.shared_prefix: where its response starts)
    # learner.shared_prefix (learner/prefix_sharing.py): rows with one prompt share one copy of it
    shared_len: torch.Tensor | None = None  # [R] prompt tokens row r reads from a shared copy (0: none)
    prefix_offset: torch.Tensor | None = None  # [R] where that copy starts in sequence row_seq[r]
    attn_mask: torch.Tensor | None = None  # [S, 1, T, T] bool (True: attend) or additive float, for the model
    segments: Segments | None = None  # attention by segments instead of a mask (learner/segment_attention.py)

    def index(self, rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sequence, position) in the packed layout of padded positions (rows [N], cols [N])."""
        if self.shared_len is None:
            return self.row_seq[rows], self.row_offset[rows] + cols
        plen = self.shared_len[rows]
        at = torch.where(cols < plen, self.prefix_offset[rows] + cols, self.row_offset[rows] + cols - plen)
        return self.row_seq[rows], at

    def attention(self, model: Any) -> contextlib.AbstractContextManager:
        """The context to run `model(**self.model_inputs(model))` in: segment attention switched on, or nothing."""
        return segments_on(model) if self.segments is not None else contextlib.nullcontext()

    def model_inputs(self, model: Any) -> dict[str, Any]:
        """The forward inputs of `model` (an HF causal LM): by segments, the layout in place of the mask; with no
        mask given, transformers builds the block-diagonal causal mask from the position-id resets; a shared
        prefix passes its own 4D mask (responses restart their positions at the prompt's end, not at 0): bool for
        sdpa, additive for eager attention."""
        mask: Any = self.attn_mask
        if self.segments is not None:
            mask = {"full_attention": self.segments}
        elif mask is not None:
            config = getattr(getattr(model, "module", model), "config", None)
            impl = getattr(config, "_attn_implementation", "sdpa")
            if impl == "eager":
                dtype = getattr(config, "dtype", None) or torch.float32
                dtype = dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32
                mask = torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
                    ~mask, torch.finfo(dtype).min
                )
            elif impl != "sdpa":
                raise ValueError(
                    f"learner.shared_prefix: attention implementation {impl!r} takes no custom mask; "
                    "load the model with sdpa or eager attention, or set learner.shared_prefix=false"
                )
        return {"input_ids": self.input_ids, "position_ids": self.position_ids, "attention_mask": mask}


def first_fit(sizes: list[int], cap: int) -> list[list[int]]:
    """Indices of `sizes` in bins of total <= `cap`, first fit in descending size (an item over `cap` goes alone);
    `cap` <= 0: one bin, in order."""
    if cap <= 0:
        return [list(range(len(sizes)))]
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        for b, free in enumerate(room):
            if sizes[i] <= free:
                bins[b].append(i)
                room[b] -= sizes[i]
                break
        else:
            bins.append([i])
            room.append(cap - sizes[i])
    return bins


def pack(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    pack_tokens: int = 0,
    pad_id: int = 0,
    multiple: int = 1,
    segments: bool = False,
) -> Packed:
    """Pack the rows of right-padded `input_ids` [R, L] (`attention_mask` [R, L] a prefix of ones per row).

    `pack_tokens` > 0: at most that many tokens per packed sequence (a longer row goes alone), rows placed first-fit
    in descending length; 0: every row in one sequence, in order (TRL's padding_free). `multiple`: the packed
    length is rounded up to a multiple of it (learner.compile). `segments`: also the layout's `Segments` (each row
    attends itself only)."""
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
        row_seq = torch.zeros(n, dtype=torch.long, device=input_ids.device)
        return Packed(ids, pos, row_seq, row_offset, segments=_row_segments(row_seq, row_offset, lengths, width)
                      if segments else None)  # fmt: skip
    lens = [int(x) for x in lengths]
    bins = first_fit(lens, pack_tokens)
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
    return Packed(ids, pos, row_seq, row_offset, segments=_row_segments(row_seq, row_offset, lengths, width)
                  if segments else None)  # fmt: skip


def _row_segments(row_seq: torch.Tensor, row_offset: torch.Tensor, lengths: torch.Tensor, width: int) -> Segments:
    """Segments of plainly packed rows: each row attends its own tokens only."""
    spans = [(s, 0, 0, o, k) for s, o, k in zip(row_seq.tolist(), row_offset.tolist(), lengths.tolist())]
    return Segments.build(spans, width, row_seq.device)
