"""Tasks: name -> class. A task yields prompts and scores completions; it never imports an engine.

Besides the built-ins, `task.module=pkg.module:TaskClass` or a `two_grpo.tasks` entry point names your own class
(tasks/plugins.py); it is built as TaskClass(task_cfg, tokenizer) and must follow tasks/base.py's Task protocol.
"""

from __future__ import annotations

from typing import Any

from two_grpo.config.schema import ConfigError, TaskConfig
from two_grpo.tasks.base import Task

TASK_ATTRS = ("name", "score_fn", "sandboxed", "train_prompts", "eval_prompts")


def make_task(cfg: TaskConfig, tokenizer: Any) -> Task:
    if cfg.module or cfg.name not in ("toy_arith", "math", "reasoning_gym"):
        from two_grpo.tasks.plugins import load_task_class

        cls = load_task_class(cfg.module, cfg.name)
        task = cls(cfg, tokenizer)
        missing = [a for a in TASK_ATTRS if not hasattr(task, a)]
        if missing:
            where = cfg.module or cfg.name
            raise ConfigError(f"task {where!r}: the task object has no {', '.join(missing)} (see tasks/base.py)")
        return task
    if cfg.name == "toy_arith":
        from two_grpo.tasks.toy_arith import ToyArithTask

        return ToyArithTask(cfg.arith)
    if cfg.name == "reasoning_gym":
        from two_grpo.tasks.reasoning_gym_task import ReasoningGymTask

        return ReasoningGymTask(cfg.rg)
    from two_grpo.tasks.math_task import MathTask

    return MathTask(cfg.data, tokenizer)


def check_data_files(task: TaskConfig, benchmarks: dict[str, Any]) -> None:
    """ConfigError for a local data file that does not exist: the built-in math task's `task.data.path` and each
    `eval.benchmarks.<name>.path`. Cheap, so a run checks it before it resolves (maybe builds) the model."""
    from two_grpo.tasks.math_task import check_local_file

    if task.name == "math" and not task.module:
        check_local_file(task.data.path)
    for name, bench in benchmarks.items():
        check_local_file(bench.path, f"eval.benchmarks.{name}.path")
