"""Rollout records and the padded training batch.

Dimension letters used across the code base:
- P prompts in a rollout batch, G `group_size`, R = P*G rollouts, M prompts per optimizer mini-batch;
- L padded length of prompt+response rows; the learner scores L-1 next-token positions.

A row of a TrainBatch is `prompt tokens + response tokens`, right-padded. `loss_mask[i, j] = 1` when the
token at position j+1 of row i is a response token, so per-token tensors are [R, L-1] and line up with
`logits[:, :-1]`. Groups are carried by `group_ids`, never by position.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch


@dataclass
class Prompt:
    prompt_id: int  # index in the task's prompt set (stable across runs with the same task config)
    text: str  # what the model sees
    answer: str  # gold answer, as the task's scorer expects it
    question: str = ""  # the raw question (for dumps and overlap checks)
    fields: dict[str, Any] = field(default_factory=dict)  # the record's other fields, for plug-in rewards


@dataclass
class Rollout:
    group_id: int  # rollouts of one prompt in one rollout batch share this id
    prompt_id: int
    prompt_token_ids: list[int]
    token_ids: list[int]  # response tokens, including the EOS token when finish_reason == "stop"
    text: str  # decoded response, special tokens skipped
    finish_reason: str  # "stop" | "length"
    sample_logprobs: list[float] | None = None  # engine's log-probs of token_ids, when it reports them
    reward: float = 0.0
    advantage: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainBatch:
    input_ids: torch.Tensor  # [R, L] int64
    attention_mask: torch.Tensor  # [R, L] int64
    loss_mask: torch.Tensor  # [R, L-1] float32
    adv: torch.Tensor  # [R] float32
    group_ids: torch.Tensor  # [R] int64
    old_logp: torch.Tensor | None = None  # [R, L-1] float32, policy that sampled
    ref_logp: torch.Tensor | None = None  # [R, L-1] float32, reference policy
    behav_logp: torch.Tensor | None = None  # [R, L-1] float32, the rollout engine's own sampling log-probs

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def n_tokens(self) -> float:
        return float(self.loss_mask.sum().item())

    def select(self, idx: torch.Tensor) -> TrainBatch:
        """Rows `idx` [k], with columns trimmed to the longest selected row."""
        length = int(self.attention_mask[idx].sum(dim=1).max().item()) if len(idx) else 1
        length = max(length, 2)

        def take(t: torch.Tensor | None, cols: int) -> torch.Tensor | None:
            return None if t is None else t[idx, :cols]

        return TrainBatch(
            input_ids=self.input_ids[idx, :length],
            attention_mask=self.attention_mask[idx, :length],
            loss_mask=self.loss_mask[idx, : length - 1],
            adv=self.adv[idx],
            group_ids=self.group_ids[idx],
            old_logp=take(self.old_logp, length - 1),
            ref_logp=take(self.ref_logp, length - 1),
            behav_logp=take(self.behav_logp, length - 1),
        )

    def split_rows(self, rows_per_chunk: int) -> list[TrainBatch]:
        """Consecutive chunks of at most `rows_per_chunk` rows (micro-batches)."""
        n = len(self)
        return [self.select(torch.arange(i, min(i + rows_per_chunk, n))) for i in range(0, n, rows_per_chunk)]

    def with_logprobs(self, old_logp: torch.Tensor | None = None, ref_logp: torch.Tensor | None = None) -> TrainBatch:
        return replace(
            self,
            old_logp=old_logp if old_logp is not None else self.old_logp,
            ref_logp=ref_logp if ref_logp is not None else self.ref_logp,
        )


def collate(rollouts: list[Rollout], pad_id: int) -> TrainBatch:
    """Pad rollouts (with `.advantage` set) into a TrainBatch, in the given order."""
    rows = [r.prompt_token_ids + r.token_ids for r in rollouts]
    length = max(2, max((len(x) for x in rows), default=2))
    n = len(rows)
    input_ids = torch.full((n, length), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, length), dtype=torch.long)
    loss_mask = torch.zeros((n, length - 1), dtype=torch.float32)
    for i, (r, row) in enumerate(zip(rollouts, rows)):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        attention_mask[i, : len(row)] = 1
        start = len(r.prompt_token_ids) - 1
        loss_mask[i, start : start + len(r.token_ids)] = 1.0
    return TrainBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        loss_mask=loss_mask,
        adv=torch.tensor([r.advantage for r in rollouts], dtype=torch.float32),
        group_ids=torch.tensor([r.group_id for r in rollouts], dtype=torch.long),
        behav_logp=engine_logprobs(rollouts, loss_mask),
    )


def engine_logprobs(rollouts: list[Rollout], loss_mask: torch.Tensor) -> torch.Tensor | None:
    """[R, L-1] sampling log-probs reported by the engine, aligned with `loss_mask`; None unless all have them."""
    if not rollouts or any(r.sample_logprobs is None for r in rollouts):
        return None
    out = torch.zeros_like(loss_mask)
    for i, r in enumerate(rollouts):
        start = len(r.prompt_token_ids) - 1
        out[i, start : start + len(r.token_ids)] = torch.tensor(r.sample_logprobs, dtype=torch.float32)
    return out


def split_groups(rollouts: list[Rollout], n_chunks: int) -> list[list[Rollout]]:
    """Split rollouts into `n_chunks` lists of whole groups, groups in order of first appearance."""
    order: dict[int, list[Rollout]] = {}
    for r in rollouts:
        order.setdefault(r.group_id, []).append(r)
    groups = list(order.values())
    per = -(-len(groups) // n_chunks) if groups else 0
    return [[r for g in groups[i * per : (i + 1) * per] for r in g] for i in range(n_chunks)]
