"""Epoch-shuffled prompt order, deterministic in (seed, epoch), with a position that can be saved and restored."""

from __future__ import annotations

import torch


class PromptSampler:
    def __init__(self, n_prompts: int, prompts_per_batch: int, seed: int):
        if n_prompts < 1:
            raise ValueError("the task has no training prompts")
        self.n, self.per_batch, self.seed = n_prompts, prompts_per_batch, seed
        self.epoch, self.offset = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        return torch.randperm(self.n, generator=g).tolist()

    @property
    def epochs_done(self) -> float:
        return self.epoch + self.offset / self.n

    def next_batch(self, n: int | None = None) -> list[int]:
        """Indices of the next `n` (default `prompts_per_batch`) prompts; an epoch boundary continues into the
        next epoch."""
        want = self.per_batch if n is None else n
        out: list[int] = []
        while len(out) < want:
            take = min(want - len(out), self.n - self.offset)
            out += self._order[self.offset : self.offset + take]
            self.offset += take
            if self.offset == self.n:
                self.epoch, self.offset = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "offset": self.offset}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.offset = int(state["epoch"]), int(state["offset"])
        self._order = self._permutation(self.epoch)
