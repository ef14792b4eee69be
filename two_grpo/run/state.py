"""The training loop's state in one object (torchtitan's Stateful train state).

`Loop` holds the run's parts (engine, learner, scorer, tracker, ...) and its counters: the rollout-batch index, the
prompt sampler, the budget spent, the phase timers, the guards, the metrics history and the eval at start.
`Loop.state_dict()` is everything a checkpoint holds besides the learner's own state and the RNGs, and
`Loop.load_state_dict()` puts it back, so checkpoint and resume are two calls (run/checkpoint.py, run/resume.py).
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from two_grpo.config.schema import Derived, TrainConfig
from two_grpo.data.batch import Prompt
from two_grpo.data.sampler import PromptSampler
from two_grpo.run.guards import NonFiniteGuard, ZeroSignalGuard
from two_grpo.run.tracking import PHASES


class Timers:
    """Seconds per phase: since the last metrics line (`pop`) and over the whole run (`total`)."""

    def __init__(self) -> None:
        self.since_log: dict[str, float] = defaultdict(float)
        self.total: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.since_log[name] += dt
        self.total[name] += dt

    def pop(self) -> dict[str, float]:
        out = {f"time/{p}": self.since_log.pop(p, 0.0) for p in PHASES}
        self.since_log.clear()
        return out


class Budget:
    """Counters of what the run has spent, and the stopping test against cfg.budget."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg.budget
        self.steps = self.rollouts = self.tokens = 0
        self.t_start = time.time()

    def exhausted(self, epochs_done: float) -> bool:
        b = self.cfg
        return bool(
            (b.max_steps and self.steps >= b.max_steps)
            or (b.max_epochs and epochs_done >= b.max_epochs)
            or (b.max_rollouts and self.rollouts >= b.max_rollouts)
            or (b.max_tokens and self.tokens >= b.max_tokens)
            or (b.max_wallclock_s and time.time() - self.t_start >= b.max_wallclock_s)
        )

    def as_metrics(self) -> dict[str, int]:
        return {
            "budget/rollouts_total": self.rollouts,
            "budget/tokens_generated_total": self.tokens,
            "budget/optimizer_steps": self.steps,
        }


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def sampling_seed(run_seed: int, rollout_batch: int) -> int:
    """Per-rollout-batch sampling seed, derived from the run seed and the batch index (resume-safe)."""
    return (run_seed * 1_000_003 + rollout_batch * 7919) % (2**31 - 1)


@dataclass
class Loop:
    """What one rollout step reads and advances: the run's parts (built once) and its state (checkpointed)."""

    derived: Derived
    train_set: list[Prompt]
    engine: Any  # rollout/: RolloutEngine
    scorer: Any  # tasks/rewards.py: RewardScorer
    learner: Any  # learner/: TorchLearner | DeepSpeedLearner
    tracker: Any  # run/tracking.py: Tracker (multirank.NullTracker off rank 0)
    view: Any  # run/console.py: ProgressView (multirank.NullView off rank 0)
    sampler: PromptSampler
    budget: Budget
    guard: NonFiniteGuard
    zero_signal: ZeroSignalGuard
    timers: Timers = field(default_factory=Timers)
    rollout_batch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    eval_start: dict[str, float] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        """Everything of the loop a checkpoint needs besides the learner's own state and the RNGs."""
        b = self.budget
        return {
            "rollout_batch": self.rollout_batch,
            "sampler": self.sampler.state_dict(),
            "budget": {"steps": b.steps, "rollouts": b.rollouts, "tokens": b.tokens},
            "wallclock_s": time.time() - b.t_start,
            "timers_total": dict(self.timers.total),
            "guard": self.guard.state_dict(),
            "skipped_updates": getattr(self.learner, "skipped_updates", 0),
            "history": self.history,
            "eval_start": self.eval_start,
            "zero_signal": self.zero_signal.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The inverse of state_dict (the wall clock resumes where it stopped)."""
        self.rollout_batch, self.history, self.eval_start = (
            state["rollout_batch"],
            state["history"],
            state["eval_start"],
        )
        self.sampler.load_state_dict(state["sampler"])
        b = self.budget
        b.steps, b.rollouts, b.tokens = (state["budget"][k] for k in ("steps", "rollouts", "tokens"))
        b.t_start = time.time() - state["wallclock_s"]
        self.timers.total.update(state["timers_total"])
        self.guard.load_state_dict(state["guard"])
        if hasattr(self.learner, "skipped_updates"):
            self.learner.skipped_updates = state["skipped_updates"]
        self.zero_signal.load_state_dict(state.get("zero_signal", self.zero_signal.state_dict()))
