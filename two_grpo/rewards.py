"""Score a rollout batch with the task's reward function: inline for cheap exact checks, in a sandboxed
worker pool (hard deadline per completion) for math-verify. Counts timeouts and errors; a non-finite
reward is an error, never a value that reaches a group's mean or std."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from two_grpo.batch import Prompt, Rollout
from two_grpo.tasks.base import Task
from two_grpo.tasks.sandbox import Outcome, ScoringPool


@dataclass
class ScoreReport:
    rewards: list[float]
    timeouts: int = 0
    errors: int = 0
    first_failures: list[dict[str, str]] = field(default_factory=list)


class RewardScorer:
    def __init__(self, task: Task, timeout_s: float, workers: int):
        self.task = task
        self.pool = ScoringPool(task.score_fn, workers=workers, timeout_s=timeout_s) if task.sandboxed else None
        if self.pool is not None:
            self.pool.warm_up(("1", "1"))

    def score(self, rollouts: list[Rollout], prompts: dict[int, Prompt]) -> ScoreReport:
        items = [(prompts[r.prompt_id].answer, r.text) for r in rollouts]
        if self.pool is not None:
            outcomes = self.pool.map(items)
        else:
            outcomes = []
            for gold, text in items:
                try:
                    outcomes.append(Outcome(float(self.task.score_fn(gold, text)), "ok"))
                except Exception as exc:
                    outcomes.append(Outcome(0.0, "error", f"{type(exc).__name__}: {exc}"[:500]))
        report = ScoreReport(rewards=[])
        for (gold, text), out in zip(items, outcomes):
            value, status = out.value, out.status
            if status == "ok" and not math.isfinite(value):
                value, status, out.detail = 0.0, "error", f"non-finite reward {out.value!r}"
            report.rewards.append(value)
            report.timeouts += status == "timeout"
            report.errors += status == "error"
            if status != "ok" and len(report.first_failures) < 5:
                report.first_failures.append(
                    {"status": status, "detail": out.detail, "gold": gold, "completion": text[:2000]}
                )
        return report

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
