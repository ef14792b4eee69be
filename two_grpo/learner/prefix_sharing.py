"""`learner.shared_prefix`: the rows of a micro-batch that begin with the same prompt (a GRPO group's G rollouts)
packed with one copy of that prompt that every response attends to, so the learner's forward and backward run
over P·prompt + Σ response tokens instead of G·P·prompt + Σ response (the idea of Prefix Grouper, 2025).

The loss and every gradient are those of the padded layout to fp32 rounding: under causal attention a prompt's
hidden states do not depend on what follows it, so each response sees the same keys and values at the same RoPE
positions, and the shared copy's hidden states receive the sum of the gradients that the G copies would.

Layout (learner/packing.py's `Packed`, with `shared_len`, `prefix_offset` and `attn_mask` set): each packed
sequence holds units `[prompt, response_1, ..., response_k]` end to end, then padding. Position ids run 0..p-1
over the prompt and restart at p on each response. Query q attends key k when k <= q and k lies in q's own segment
or in the prompt of q's unit. A row shares the longest prefix that it has in common with the others: every token
before its first scored position (the prompt, `loss_mask`), compared token for token, so sharing is exact whatever
the rows mean. A row with no scored token, or a prompt alone, is packed as a plain row. `pack_tokens` > 0 caps a
sequence's length: a group whose responses do not fit next to one prompt copy gets another copy.
"""

from __future__ import annotations

import torch

from two_grpo.learner.packing import Packed, first_fit
from two_grpo.learner.segment_attention import Segments


def prompt_lengths(loss_mask: torch.Tensor) -> list[int]:
    """Tokens before row r's first scored one (`loss_mask` [R, L-1]: position c scores token c+1), 0 if none."""
    scored = loss_mask > 0
    first = (scored.float().argmax(dim=1) + 1) * scored.any(dim=1)  # [R]
    return first.tolist()


def pack_shared(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    loss_mask: torch.Tensor,
    pack_tokens: int = 0,
    pad_id: int = 0,
    multiple: int = 1,
    min_sequences: int = 1,
    segments: bool = False,
) -> Packed:
    """Pack right-padded rows `input_ids` [R, L] (`attention_mask` [R, L], `loss_mask` [R, L-1]) with one copy of
    each shared prompt; `pack_tokens` (0: one sequence), `multiple` (width rounded up to it) and `min_sequences`
    (padding sequences appended up to it: torch.compile specialises a size of 1) as in packing.pack. `segments`:
    the layout's `Segments` (learner/segment_attention.py: a prompt copy attends itself, a response its prompt
    copy and itself) instead of the dense [S, 1, T, T] mask."""
    n, device = int(input_ids.shape[0]), input_ids.device
    lengths = attention_mask.sum(dim=1).clamp(min=1).tolist()
    plens = prompt_lengths(loss_mask)
    rows_ids = input_ids.tolist()  # Python lists: far cheaper than per-row tensor slices for short rows
    rows_of: dict[tuple[int, ...], list[int]] = {}  # prompt tokens -> rows, in order of first appearance
    singles: list[list[int]] = []
    for r in range(n):
        if 0 < plens[r] < lengths[r]:
            rows_of.setdefault(tuple(rows_ids[r][: plens[r]]), []).append(r)
        else:
            singles.append([r])
    cap = pack_tokens if pack_tokens > 0 else None
    units: list[tuple[int, list[int]]] = []  # (shared prompt length, rows); 0: a plain row
    for rows in rows_of.values():
        p, cur, size = plens[rows[0]], [], plens[rows[0]]
        for r in rows:
            extra = lengths[r] - p
            if cur and cap is not None and size + extra > cap:
                units.append((p, cur))
                cur, size = [], p
            cur.append(r)
            size += extra
        units.append((p, cur))
    units += [(0, rows) for rows in singles]
    units = [(0, rows) if len(rows) == 1 else (p, rows) for p, rows in units]  # one response: a plain row

    def unit_len(unit: tuple[int, list[int]]) -> int:
        p, rows = unit
        return p + sum(lengths[r] - p for r in rows)

    bins = [[units[i] for i in b] for b in first_fit([unit_len(u) for u in units], pack_tokens)]
    bins += [[] for _ in range(min_sequences - len(bins))]
    width = max([sum(unit_len(u) for u in b) for b in bins] + [1])
    width += -width % multiple
    ids, pos, seg, home = [], [], [], []  # per packed sequence: tokens, positions, segment, prompt segment
    row_seq, row_offset, shared_len, prefix_offset = [0] * n, [0] * n, [0] * n, [0] * n
    next_seg, spans = 0, []  # spans: (sequence, prefix start, prefix length, start, length) per segment
    for s, b in enumerate(bins):
        t_ids, t_pos, t_seg, t_home = [], [], [], []
        for p, rows in b:
            prompt_seg, start = next_seg, len(t_ids)
            if p:  # the shared prompt copy
                spans.append((s, 0, 0, start, p))
                t_ids += rows_ids[rows[0]][:p]
                t_pos += range(p)
                t_seg += [prompt_seg] * p
                t_home += [prompt_seg] * p
                next_seg += 1
            for r in rows:
                k = lengths[r] - p
                row_seq[r], row_offset[r], shared_len[r], prefix_offset[r] = s, len(t_ids), p, start
                spans.append((s, start, p, len(t_ids), k))
                t_ids += rows_ids[r][p : lengths[r]]
                t_pos += range(p, lengths[r])
                t_seg += [next_seg] * k
                t_home += [prompt_seg if p else next_seg] * k
                next_seg += 1
        tail = width - len(t_ids)  # the tail: a segment of its own, so no query is fully masked
        ids.append(t_ids + [pad_id] * tail)
        pos.append(t_pos + list(range(tail)))
        seg.append(t_seg + [next_seg] * tail)
        home.append(t_home + [next_seg] * tail)
        next_seg += 1

    def on(x: list, dtype: torch.dtype = torch.long) -> torch.Tensor:
        return torch.tensor(x, dtype=dtype, device=device)

    packed = Packed(on(ids, input_ids.dtype), on(pos), on(row_seq), on(row_offset), shared_len=on(shared_len),
                    prefix_offset=on(prefix_offset))  # fmt: skip
    if segments:
        packed.segments = Segments.build(spans, width, device)
    else:
        seg_t, home_t = torch.tensor(seg), torch.tensor(home)  # [S, T]
        causal = torch.ones(width, width, dtype=torch.bool).tril()  # [T, T]: key <= query
        same = (seg_t[:, None, :] == seg_t[:, :, None]) | (seg_t[:, None, :] == home_t[:, :, None])  # [S, Tq, Tk]
        packed.attn_mask = (causal & same).unsqueeze(1).to(device)  # [S, 1, T, T]
    return packed
