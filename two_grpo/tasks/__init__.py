"""Tasks: name -> class. A task yields prompts and scores completions; it never imports an engine."""

from __future__ import annotations

from typing import Any

from two_grpo.config import TaskConfig
from two_grpo.tasks.base import Task


def make_task(cfg: TaskConfig, tokenizer: Any) -> Task:
    if cfg.name == "toy_arith":
        from two_grpo.tasks.toy_arith import ToyArithTask

        return ToyArithTask(cfg.arith)
    if cfg.name == "math":
        from two_grpo.tasks.math_task import MathTask

        return MathTask(cfg.data, tokenizer)
    if cfg.name == "reasoning_gym":
        from two_grpo.tasks.reasoning_gym_task import ReasoningGymTask

        return ReasoningGymTask(cfg.rg)
    raise ValueError(f"unknown task {cfg.name!r}")
