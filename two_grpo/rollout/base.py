"""The RolloutEngine protocol that the HF (fallback) and vLLM engines implement."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from two_grpo.data.batch import Prompt, Rollout


@dataclass(frozen=True)
class Sampling:
    n: int  # samples per prompt (group_size for training)
    temperature: float  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    max_new_tokens: int = 8
    seed: int = 0  # per-call seed: the same (seed, prompts, weights) give the same samples


def train_sampling(cfg: Any, seed: int) -> Sampling:
    """Training-time sampling from `cfg.rollout` (a TrainConfig): `group_size` samples per prompt."""
    r = cfg.rollout
    return Sampling(cfg.group_size, r.temperature, r.top_p, r.top_k, r.max_response_tokens, seed)


def make_rollout(
    prompt: Prompt,
    group_id: int,
    prompt_ids: list[int],
    token_ids: list[int],
    finish_reason: str,
    tokenizer: Any,
    sample_logprobs: list[float] | None = None,
) -> Rollout:
    """One engine output as a Rollout; its text is decoded once here, for the scorer."""
    return Rollout(
        group_id=group_id,
        prompt_id=prompt.prompt_id,
        prompt_token_ids=prompt_ids,
        token_ids=token_ids,
        text=tokenizer.decode(token_ids, skip_special_tokens=True),
        finish_reason=finish_reason,
        sample_logprobs=sample_logprobs,
    )


class RolloutEngine(Protocol):
    name: str
    pad_id: int  # token id used to pad rows of a TrainBatch

    def generate(self, prompts: list[Prompt], group_ids: list[int], sampling: Sampling) -> list[Rollout]:
        """`sampling.n` rollouts per prompt; rollouts of prompts[i] carry group_ids[i]."""
        ...

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Replace the engine's weights (no disk round trip) and reset any prefix cache."""
        ...

    def shares_learner_weights(self) -> bool:
        """True when the engine samples from the learner's own module, so no sync is needed."""
        ...
