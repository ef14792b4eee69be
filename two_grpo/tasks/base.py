"""The Task protocol: a task yields prompts with gold answers and scores one completion with a float reward.

A task knows nothing about models, engines or torch. `score` must never raise on malformed model output
(return 0.0) and must be a picklable, module-level function call so it can run in a worker process
(`tasks/sandbox.py`) with a hard deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from two_grpo.data.batch import Prompt


class Task(Protocol):
    name: str
    #: module-level function (gold_answer, completion_text) -> float, run in worker processes when sandboxed
    score_fn: Callable[[str, str], float]
    #: True when scoring can hang (sympy etc.) and must run in worker processes with a deadline
    sandboxed: bool

    def train_prompts(self) -> list[Prompt]: ...

    def eval_prompts(self, n: int) -> list[Prompt]: ...
