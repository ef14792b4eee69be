"""Score a rollout batch with the task's reward function: inline for cheap exact checks, in a sandboxed
worker pool (hard deadline per completion) for math-verify. Counts timeouts and errors; a non-finite
reward is an error, never a value that reaches a group's mean or std.

Plug-in rewards (`task.reward_fn`, or `task.reward_fns` + `task.reward_weights`, TRL's names) always run in the
pool: user code gets the same deadline and failure accounting. Each function is called
`fn(completion, answer, **row_fields)` (row_fields: the record's other fields, e.g. verl's `extra_info`) and
must return a real number; the reward is the weighted sum, and each function's batch mean is logged as
`reward/<name>_mean`. A non-number on the first scored batch stops the run (exit 2); later, it is a reward error.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from two_grpo.config.schema import ConfigError, TaskConfig
from two_grpo.data.batch import Prompt, Rollout
from two_grpo.tasks.base import Task
from two_grpo.tasks.sandbox import Outcome, ScoringPool

TASK_REWARD = "task"  # in task.reward_fns: the task's own reward (e.g. math-verify)


@dataclass
class ScoreReport:
    rewards: list[float]
    timeouts: int = 0
    errors: int = 0
    first_failures: list[dict[str, str]] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)  # plug-in rewards: name -> one value per rollout


class RewardTypeError(TypeError):
    """A plug-in reward returned something other than a real number."""


TYPE_ERROR = RewardTypeError.__name__  # the worker's error detail starts with it


@dataclass
class RewardPart:
    name: str  # the function's name ("task" for the task's own reward), unique in a PluginReward
    spec: str  # "path/to/file.py:function" or "task"
    weight: float


class PluginReward:
    """(gold, completion, row_fields) -> (weighted sum, value of part 1, part 2, ...). Picklable: a scoring worker
    loads the user's files itself on its first call."""

    def __init__(self, parts: list[RewardPart], task_fn: Callable[[str, str], float]):
        self.parts, self.task_fn = parts, task_fn
        self._fns: list[Callable[..., Any]] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"parts": self.parts, "task_fn": self.task_fn, "_fns": None}

    def __call__(self, gold: str, completion: str, fields: dict[str, Any]) -> tuple[float, ...]:
        from two_grpo.tasks.plugins import load_function

        if self._fns is None:
            self._fns = [
                self.task_fn if p.spec == TASK_REWARD else load_function(p.spec, quiet=True) for p in self.parts
            ]
        values = []
        for part, fn in zip(self.parts, self._fns):
            value = fn(gold, completion) if part.spec == TASK_REWARD else fn(completion, gold, **fields)
            if not isinstance(value, numbers.Real):
                raise RewardTypeError(
                    f"reward {part.spec} returned {type(value).__name__} ({str(value)[:40]!r}), not a float"
                )
            values.append(float(value))
        return (sum(p.weight * v for p, v in zip(self.parts, values)), *values)


def plugin_parts(cfg: TaskConfig) -> list[RewardPart]:
    """The plug-in rewards the config names ([] = the task's own reward only). Loads each file once here, in the
    main process, so a bad path or a missing function stops the run before anything starts (ConfigError)."""
    from two_grpo.tasks.plugins import load_function

    specs = [cfg.reward_fn] if cfg.reward_fn else list(cfg.reward_fns)
    weights = list(cfg.reward_weights) or [1.0] * len(specs)
    parts: list[RewardPart] = []
    for i, (spec, weight) in enumerate(zip(specs, weights)):
        key = "task.reward_fn" if cfg.reward_fn else f"task.reward_fns[{i}]"
        name = TASK_REWARD if spec == TASK_REWARD else load_function(spec, key).__name__
        taken = {p.name for p in parts}
        unique, n = name, 2
        while unique in taken:
            unique, n = f"{name}_{n}", n + 1
        parts.append(RewardPart(unique, spec, float(weight)))
    return parts


class RewardScorer:
    def __init__(self, task: Task, timeout_s: float, workers: int, plugins: list[RewardPart] | None = None):
        self.task = task
        self.plugin = PluginReward(plugins, task.score_fn) if plugins else None
        self._first_use_checked = False
        fn = self.plugin if self.plugin is not None else task.score_fn
        sandboxed = task.sandboxed or self.plugin is not None
        self.pool = ScoringPool(fn, workers=workers, timeout_s=timeout_s) if sandboxed else None
        if self.pool is not None:
            self.pool.warm_up(("1", "1", {}) if self.plugin is not None else ("1", "1"))

    def score(self, rollouts: list[Rollout], prompts: dict[int, Prompt]) -> ScoreReport:
        if self.plugin is not None:
            items: list[tuple[Any, ...]] = [
                (prompts[r.prompt_id].answer, r.text, prompts[r.prompt_id].fields) for r in rollouts
            ]
        else:
            items = [(prompts[r.prompt_id].answer, r.text) for r in rollouts]
        if self.pool is not None:
            outcomes = self.pool.map(items)
        else:
            outcomes = []
            for args in items:
                try:
                    outcomes.append(Outcome(float(self.task.score_fn(*args)), "ok"))
                except Exception as exc:
                    outcomes.append(Outcome(0.0, "error", f"{type(exc).__name__}: {exc}"[:500]))
        self._check_first_use(outcomes)
        report = ScoreReport(rewards=[])
        names = [p.name for p in self.plugin.parts] if self.plugin is not None else []
        report.parts = {name: [] for name in names}
        for (gold, text, *_), out in zip(items, outcomes):
            value, status = out.value, out.status
            if status == "ok" and not math.isfinite(value):
                value, status, out.detail = 0.0, "error", f"non-finite reward {out.value!r}"
            report.rewards.append(value)
            for name, part in zip(names, out.parts if status == "ok" else [0.0] * len(names)):
                report.parts[name].append(part if math.isfinite(part) else 0.0)
            report.timeouts += status == "timeout"
            report.errors += status == "error"
            if status != "ok" and len(report.first_failures) < 5:
                report.first_failures.append(
                    {"status": status, "detail": out.detail, "gold": gold, "completion": text[:2000]}
                )
        return report

    def _check_first_use(self, outcomes: list[Outcome]) -> None:
        """On the first scored batch, a plug-in returning a non-number is a config error, not a reward failure."""
        if self.plugin is None or self._first_use_checked:
            return
        self._first_use_checked = True
        for out in outcomes:
            if out.status == "error" and out.detail.startswith(f"{TYPE_ERROR}: "):
                detail = out.detail[len(TYPE_ERROR) + 2 :]
                raise ConfigError(f"{detail}; the reward function must return a float")

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
