"""Synthetic TrainBatches for learner tests (importable from any test: tests/ is on sys.path via conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from two_grpo.data.batch import Rollout, TrainBatch, collate


def random_batch(n: int, per_group: int, response_len: Callable[[int], int], seed: int = 0) -> TrainBatch:
    """`n` rollouts with random token ids (4..49) and advantages: `per_group` rollouts per group, prompt lengths
    2-4 (2 + i % 3), response length `response_len(i)` for row i."""
    g = torch.Generator().manual_seed(seed)
    rollouts = [
        Rollout(
            group_id=i // per_group,
            prompt_id=i // per_group,
            prompt_token_ids=torch.randint(4, 50, (2 + i % 3,), generator=g).tolist(),
            token_ids=torch.randint(4, 50, (response_len(i),), generator=g).tolist(),
            text="",
            finish_reason="stop",
            advantage=float(torch.randn(1, generator=g)),
        )
        for i in range(n)
    ]
    return collate(rollouts, pad_id=0)
