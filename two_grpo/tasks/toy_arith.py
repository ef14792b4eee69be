"""The built-in arithmetic task: `12+7=` -> `19`, generated from a seed, checked exactly. No download.

It is the embedded default. Problems mix shapes of different difficulty so that the per-prompt solve rate of the
warm-started tiny model spreads (easy prompts near 1, hard ones near 0, many in between): operands of
`min_digits`..`max_digits` digits (so carries and borrows vary), operators `+ - *` (the second factor of `*` has at
most `mul_max_digits` digits) and a share `chain_frac` of three-term chains `a+b-c`. With `max_digits=0` the
operands are drawn from `min_operand..max_operand` instead (the old range mode). The out-of-distribution split
(`ood_eval_prompts`) draws operands with `ood_extra_digits` more digits than training ever shows.
"""

from __future__ import annotations

import random
import re

from two_grpo.config.schema import ArithConfig
from two_grpo.data.batch import Prompt

_INT = re.compile(r"\s*(-?\d{1,12})\s*")
TASK_SEED = 1234  # the problem set is fixed by the task config, not by the run seed
OOD_SEED = TASK_SEED + 2


def format_ok(completion: str) -> bool:
    """True when the completion is one integer and nothing else (what the exact checker can read)."""
    return len(completion) <= 64 and _INT.fullmatch(completion) is not None


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


def _operand(rng: random.Random, cfg: ArithConfig, extra_digits: int, max_digits: int = 0) -> int:
    if cfg.max_digits <= 0:  # range mode; OOD operands have `extra_digits` more digits than max_operand
        if extra_digits:
            d = len(str(cfg.max_operand)) + extra_digits
            return rng.randint(10 ** (d - 1), 10**d - 1)
        return rng.randint(cfg.min_operand, cfg.max_operand)
    hi = min(cfg.max_digits, max_digits) if max_digits else cfg.max_digits
    d = rng.randint(min(cfg.min_digits, hi), hi) + extra_digits
    return rng.randint(0 if d == 1 else 10 ** (d - 1), 10**d - 1)


def make_problem(rng: random.Random, cfg: ArithConfig, extra_digits: int = 0) -> tuple[str, str]:
    """One problem `(question, answer)`, e.g. ("12+7=", "19"); `extra_digits` lengthens every operand (OOD)."""
    op = rng.choice(cfg.operators)
    a = _operand(rng, cfg, extra_digits)
    if op == "*":
        b = _operand(rng, cfg, extra_digits if cfg.mul_max_digits > 1 else 0, cfg.mul_max_digits)
        return f"{a}*{b}=", str(a * b)
    b = _operand(rng, cfg, extra_digits)
    value = a + b if op == "+" else a - b
    if cfg.chain_frac > 0 and rng.random() < cfg.chain_frac:
        op2 = rng.choice("+-")
        c = _operand(rng, cfg, extra_digits)
        value = value + c if op2 == "+" else value - c
        return f"{a}{op}{b}{op2}{c}=", str(value)
    return f"{a}{op}{b}=", str(value)


def problem_set(
    cfg: ArithConfig, n: int, seed: int, exclude: set[str] | None = None, extra_digits: int = 0
) -> list[tuple[str, str]]:
    """`n` distinct problems (fewer if the space is smaller), deterministic in (cfg, seed)."""
    rng = random.Random(seed)
    seen = set(exclude or ())
    out: list[tuple[str, str]] = []
    attempts = 0
    while len(out) < n and attempts < 20 * n:
        attempts += 1
        q, a = make_problem(rng, cfg, extra_digits)
        if q not in seen:
            seen.add(q)
            out.append((q, a))
    return out


def _prompts(pairs: list[tuple[str, str]]) -> list[Prompt]:
    return [Prompt(prompt_id=i, text=q, answer=a, question=q) for i, (q, a) in enumerate(pairs)]


class ToyArithTask:
    name = "toy_arith"
    sandboxed = False

    def __init__(self, cfg: ArithConfig):
        self.cfg = cfg
        self.score_fn = partial_score if cfg.partial_credit else exact_score
        self._eval = problem_set(cfg, cfg.eval_prompts, TASK_SEED + 1)
        held_out = {q for q, _ in self._eval}
        self._ood = problem_set(cfg, cfg.ood_eval_prompts, OOD_SEED, held_out, cfg.ood_extra_digits)
        self._held_out = held_out | {q for q, _ in self._ood}
        self._train = problem_set(cfg, cfg.train_prompts, TASK_SEED, exclude=self._held_out)

    def format_ok(self, completion: str) -> bool:
        return format_ok(completion)

    def train_prompts(self) -> list[Prompt]:
        return _prompts(self._train)

    def eval_prompts(self, n: int) -> list[Prompt]:
        return _prompts(self._eval[:n])

    def extra_eval_splits(self) -> dict[str, list[Prompt]]:
        """Benchmarks evaluated beside the held-out split: `toy_arith_ood` (operands one digit longer)."""
        return {f"{self.name}_ood": _prompts(self._ood)} if self._ood else {}

    def sft_pairs(self, n: int, seed: int) -> list[tuple[str, str]]:
        """`n` fresh (question, answer) pairs for a supervised warm start; never an eval or OOD question."""
        rng = random.Random(seed)
        out: list[tuple[str, str]] = []
        while len(out) < n:
            q, a = make_problem(rng, self.cfg)
            if q not in self._held_out:
                out.append((q, a))
        return out
