"""The data gate, run once at start: record schema, duplicate prompts, train/eval contamination.

- Schema: every record has a non-empty prompt and gold answer (`check_record`, called while loading).
- Duplicates: prompts equal after normalisation (lower case, collapsed whitespace) are counted and removed.
- Overlap: a training prompt sharing a normalised word 8-gram with an eval prompt (as open-r1's
  scripts/decontaminate.py does; prompts shorter than 8 words are compared whole) is reported, dropped
  (`task.data.overlap=drop`) or refused (`task.data.overlap=refuse`, exit 2).
- MATH-500 is 500 problems of MATH's test split, so training on MATH test rows contaminates it: warned.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from typing import Any

from two_grpo.batch import Prompt
from two_grpo.config import ConfigError, TaskConfig

NGRAM = 8


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


def word_ngrams(text: str, n: int = NGRAM) -> set[str]:
    """Normalised word n-grams of `text`; a text shorter than n words is one gram (itself)."""
    words = normalize(text).split()
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


def check_record(row: Any, n: int, path: str, prompt_field: str, answer_field: str) -> None:
    """Raise ConfigError (one line naming the file, the record and the fix) when record n is malformed."""
    if not isinstance(row, dict):
        raise ConfigError(f"{path}: record {n} is a {type(row).__name__}, not an object; fix or remove it")
    for key in (prompt_field, answer_field):
        if key not in row:
            raise ConfigError(
                f"{path}: record {n} has no field {key!r} (fields: {', '.join(sorted(row))}); "
                "set task.data.prompt_field / task.data.answer_field"
            )
        if row[key] is None or not str(row[key]).strip():
            raise ConfigError(f"{path}: record {n} has an empty {key!r}; fix or remove that record")


def dedupe(prompts: list[Prompt]) -> tuple[list[Prompt], int]:
    """Drop prompts whose normalised question repeats an earlier one; prompt_ids are renumbered 0..n-1."""
    seen: set[str] = set()
    kept: list[Prompt] = []
    for p in prompts:
        key = normalize(p.question or p.text)
        if key in seen:
            continue
        seen.add(key)
        kept.append(replace(p, prompt_id=len(kept)))
    return kept, len(prompts) - len(kept)


def find_overlap(train: list[str], bench: list[str], n: int = NGRAM) -> list[int]:
    """Indices of `train` texts sharing a word n-gram with any `bench` text."""
    bench_grams: set[str] = set()
    for text in bench:
        bench_grams |= word_ngrams(text, n)
    return [i for i, text in enumerate(train) if word_ngrams(text, n) & bench_grams]


def contamination_warning(cfg: TaskConfig) -> str | None:
    """A warning when the training rows come from MATH's test split (the source of MATH-500)."""
    data = cfg.data
    path = data.path.lower().replace("_", "-")
    if cfg.name == "math" and "math" in path and "500" not in path and data.split.lower().startswith("test"):
        return (
            f"task.data.path={data.path!r} split={data.split!r}: MATH-500 is drawn from MATH's test split, so "
            "training on these rows contaminates any MATH-500 evaluation; train on split=train"
        )
    return None


@dataclass
class GateReport:
    train_prompts: int
    duplicates_removed: int
    overlapping: int
    dropped: int

    def line(self) -> str:
        return (
            f"data gate: {self.train_prompts} training prompts; {self.duplicates_removed} duplicates removed; "
            f"{self.overlapping} overlap the eval set (word {NGRAM}-grams){'; dropped' if self.dropped else ''}"
        )


def gate_train_set(
    cfg: TaskConfig, train: list[Prompt], bench: list[Prompt], duplicates_already_removed: int = 0
) -> tuple[list[Prompt], GateReport]:
    """Apply the gate to the training prompts; prints one report line (and the MATH warning when it applies)."""
    warning = contamination_warning(cfg)
    if warning:
        print(f"two-grpo: warning: {warning}", file=sys.stderr, flush=True)
    kept, dups = dedupe(train)
    overlap = find_overlap([p.question or p.text for p in kept], [p.question or p.text for p in bench])
    dropped = 0
    if overlap and cfg.data.overlap == "refuse":
        raise ConfigError(
            f"{len(overlap)} training prompts overlap the eval set (word {NGRAM}-grams, first: training prompt "
            f"{overlap[0]}); set task.data.overlap=drop to remove them or fix the data"
        )
    if overlap and cfg.data.overlap == "drop":
        bad = set(overlap)
        kept = [replace(p, prompt_id=i) for i, p in enumerate(p for j, p in enumerate(kept) if j not in bad)]
        dropped = len(bad)
        if not kept:
            raise ConfigError("every training prompt overlaps the eval set; nothing is left to train on")
    report = GateReport(len(kept), dups + duplicates_already_removed, len(overlap), dropped)
    print(report.line(), flush=True)
    return kept, report
