"""reasoning-gym generators as a task: `task=reasoning_gym task.rg.dataset=NAME task.rg.config={...}`.

Procedural problems with difficulty knobs (the generator's own config) and the library's own verifier: a
completion is scored by the dataset's `score_answer(answer, entry)` in the scoring pool's worker processes (hard
deadline). Offline: the generators need no download. Needs `pip install -e ".[reasoning-gym]"`.

The gold answer a prompt carries is the generator's entry as JSON (`{"dataset", "entry"}`) so that a worker
process can call `score_answer` with it. The answer read from a completion is the text inside the last
`<answer>...</answer>` when there is one, else the whole completion stripped (the tiny model answers bare).
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from two_grpo.config.schema import ConfigError, RGConfig
from two_grpo.data.batch import Prompt

_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
# reasoning-gym draws item i of a dataset with seed s from Random(s + i): datasets with nearby seeds are shifted
# copies of each other. The splits therefore use seeds this far apart (train s, eval s + 1 * SPLIT, warm start
# s + 2 * SPLIT), more than any split's size.
SPLIT_SEED_STRIDE = 10_000_019


def extract_answer(completion: str) -> str | None:
    """The answer of a completion: the last `<answer>` tag's text, else the stripped one-line completion."""
    tags = _TAG.findall(completion)
    text = tags[-1].strip() if tags else completion.strip()
    return text if text and "\n" not in text and len(text) <= 256 else None


@lru_cache(maxsize=8)
def _scorer(dataset: str) -> Any:
    import reasoning_gym

    return reasoning_gym.get_score_answer_fn(dataset)


def rg_score(gold: str, completion: str) -> float:
    """Score with the library's verifier; `gold` is the JSON this task puts in Prompt.answer. Malformed -> 0.0."""
    try:
        spec = json.loads(gold)
    except ValueError:
        spec = None
    if not isinstance(spec, dict) or "entry" not in spec:
        _scorer("chain_sum")  # the pool's warm-up call: import reasoning_gym before the deadlines count
        return 0.0
    answer = extract_answer(completion)
    if answer is None:
        return 0.0
    return float(_scorer(spec["dataset"])(answer, spec["entry"]))


def _make_dataset(cfg: RGConfig, size: int, seed: int) -> Any:
    try:
        import reasoning_gym
    except ImportError as exc:
        raise ConfigError(
            'task=reasoning_gym needs the reasoning-gym package: pip install -e ".[reasoning-gym]"'
        ) from exc
    try:
        return reasoning_gym.create_dataset(cfg.dataset, size=size, seed=seed, **dict(cfg.config))
    except (ValueError, TypeError, AssertionError) as exc:
        raise ConfigError(f"task.rg.dataset={cfg.dataset!r} / task.rg.config={dict(cfg.config)}: {exc}") from exc


def _gold(dataset: str, entry: dict[str, Any]) -> str:
    keep = {"question": entry["question"], "answer": entry["answer"], "metadata": entry.get("metadata", {})}
    return json.dumps({"dataset": dataset, "entry": keep}, default=str)


class ReasoningGymTask:
    name = "reasoning_gym"
    sandboxed = True  # the library's verifiers run in the scoring pool with a deadline

    def __init__(self, cfg: RGConfig):
        self.cfg = cfg
        self.score_fn = rg_score
        self.name = f"rg_{cfg.dataset}"
        self._eval = list(_make_dataset(cfg, cfg.eval_size, cfg.seed + SPLIT_SEED_STRIDE)) if cfg.eval_size else []
        self._held_out = {e["question"] for e in self._eval}
        train = list(_make_dataset(cfg, cfg.train_size, cfg.seed)) if cfg.train_size else []
        self._train = [e for e in train if e["question"] not in self._held_out]

    def _prompts(self, entries: list[dict[str, Any]]) -> list[Prompt]:
        return [
            Prompt(
                prompt_id=i,
                text=self.cfg.template.format(question=e["question"]),
                answer=_gold(self.cfg.dataset, e),
                question=e["question"],
            )
            for i, e in enumerate(entries)
        ]

    def format_ok(self, completion: str) -> bool:
        return extract_answer(completion) is not None

    def train_prompts(self) -> list[Prompt]:
        return self._prompts(self._train)

    def eval_prompts(self, n: int) -> list[Prompt]:
        return self._prompts(self._eval[:n])

    def sft_pairs(self, n: int, seed: int) -> list[tuple[str, str]]:
        """`n` (prompt text, gold answer) pairs from a third seed range, never an eval question."""
        entries = list(_make_dataset(self.cfg, n + len(self._held_out), self.cfg.seed + 2 * SPLIT_SEED_STRIDE + seed))
        pairs = [(self.cfg.template.format(question=e["question"]), str(e["answer"])) for e in entries]
        pairs = [p for p, e in zip(pairs, entries) if e["question"] not in self._held_out][:n]
        return (pairs * (n // max(len(pairs), 1) + 1))[:n]
