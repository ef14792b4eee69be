"""The built-in arithmetic task: `a+b=` -> `c`, generated from a seed, checked exactly. No download.

It is the embedded default: a tiny model warm-started on it solves some problems but not all, so groups
have mixed rewards and GRPO has signal. Difficulty knobs: operand range and operators.
"""

from __future__ import annotations

import random
import re

from two_grpo.batch import Prompt
from two_grpo.config import ArithConfig

_INT = re.compile(r"\s*(-?\d{1,12})\s*")
TASK_SEED = 1234  # the problem set is fixed by the task config, not by the run seed


def exact_score(gold: str, completion: str) -> float:
    """1.0 when the completion is exactly the integer `gold` (surrounding spaces allowed), else 0.0."""
    m = _INT.fullmatch(completion[:64]) if len(completion) <= 64 else None
    return 1.0 if m is not None and int(m.group(1)) == int(gold) else 0.0


def partial_score(gold: str, completion: str) -> float:
    """Graded reward in [0, 1]: share of answer characters right, position by position, 1.0 iff exact."""
    if exact_score(gold, completion) == 1.0:
        return 1.0
    pred = completion.strip()[:64]
    if not pred:
        return 0.0
    hits = sum(a == b for a, b in zip(pred, gold))
    return 0.5 * hits / max(len(pred), len(gold))  # < 0.5 unless exact


def make_problem(rng: random.Random, cfg: ArithConfig) -> tuple[str, str]:
    a = rng.randint(cfg.min_operand, cfg.max_operand)
    b = rng.randint(cfg.min_operand, cfg.max_operand)
    op = rng.choice(cfg.operators)
    value = a + b if op == "+" else a - b if op == "-" else a * b
    return f"{a}{op}{b}=", str(value)


def problem_set(cfg: ArithConfig, n: int, seed: int, exclude: set[str] | None = None) -> list[tuple[str, str]]:
    """`n` distinct problems (fewer if the space is smaller), deterministic in (cfg, seed)."""
    rng = random.Random(seed)
    seen = set(exclude or ())
    out: list[tuple[str, str]] = []
    span = cfg.max_operand - cfg.min_operand + 1
    space = span * span * len(set(cfg.operators))
    attempts = 0
    while len(out) < n and attempts < 20 * n and len(seen) < space:
        attempts += 1
        q, a = make_problem(rng, cfg)
        if q not in seen:
            seen.add(q)
            out.append((q, a))
    return out


class ToyArithTask:
    name = "toy_arith"
    sandboxed = False

    def __init__(self, cfg: ArithConfig):
        self.cfg = cfg
        self.score_fn = partial_score if cfg.partial_credit else exact_score
        self._eval = problem_set(cfg, cfg.eval_prompts, TASK_SEED + 1)
        held_out = {q for q, _ in self._eval}
        self._train = problem_set(cfg, cfg.train_prompts, TASK_SEED, exclude=held_out)

    def train_prompts(self) -> list[Prompt]:
        return [Prompt(prompt_id=i, text=q, answer=a, question=q) for i, (q, a) in enumerate(self._train)]

    def eval_prompts(self, n: int) -> list[Prompt]:
        return [Prompt(prompt_id=i, text=q, answer=a, question=q) for i, (q, a) in enumerate(self._eval[:n])]
