"""An example task for two-grpo, outside the package: `n+n=` -> `2n`, checked exactly.

A task is any class built as `TaskClass(task_cfg, tokenizer)` with the attributes of two_grpo/tasks/base.py:
`name`, `score_fn(gold, completion) -> float` (a module-level function: it may run in a worker process),
`sandboxed` (True: score in worker processes with a deadline), `train_prompts()` and `eval_prompts(n)`.
Your own settings go under `task.options` (e.g. `+task.options.max_n=500`).
"""

from __future__ import annotations

from typing import Any

from two_grpo.data.batch import Prompt


def exact(gold: str, completion: str) -> float:
    """1.0 when the completion is the gold answer (surrounding spaces allowed), else 0.0; never raises."""
    return 1.0 if completion.strip() == gold else 0.0


class DoublingTask:
    name = "doubling"
    sandboxed = False  # exact string match cannot hang
    score_fn = staticmethod(exact)

    def __init__(self, cfg: Any, tokenizer: Any):
        max_n = int(cfg.options.get("max_n", 200))
        problems = [(f"{n}+{n}=", str(2 * n)) for n in range(max_n)]
        self._eval = problems[::10]  # every 10th problem is held out
        self._train = [p for i, p in enumerate(problems) if i % 10]

    def train_prompts(self) -> list[Prompt]:
        return [Prompt(prompt_id=i, text=q, answer=a, question=q) for i, (q, a) in enumerate(self._train)]

    def eval_prompts(self, n: int) -> list[Prompt]:
        return [Prompt(prompt_id=i, text=q, answer=a, question=q) for i, (q, a) in enumerate(self._eval[:n])]
