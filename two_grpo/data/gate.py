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

from two_grpo.config.schema import ConfigError, TaskConfig
from two_grpo.data.batch import Prompt

NGRAM = 8


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


def word_ngrams(text: str, n: int = NGRAM) -> set[str]:
    """Normalised word n-grams of `text`; a text shorter than n words is one gram (itself)."""
    words = normalize(text).split()
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


MISSING = object()


def get_field(row: dict[str, Any], dotted: str) -> Any:
    """`row[dotted]` when that key exists, else the dotted path walked through nested objects (verl's parquet
    layout: `reward_model.ground_truth`); MISSING when absent."""
    if dotted in row:
        return row[dotted]
    node: Any = row
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def is_conversation(value: Any) -> bool:
    """A TRL conversational prompt: a non-empty list of {"role": str, "content": str} messages."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
        )
    )


def check_record(row: Any, n: int, path: str, prompt_field: str, answer_field: str, line: int | None = None) -> None:
    """Raise ConfigError (one line naming the file, the record and the fix) when record n is malformed.
    `line`: the record's line in a JSONL file (named as `file:line`)."""
    where = f"{path}:{line}: record {n}" if line is not None else f"{path}: record {n}"
    if not isinstance(row, dict):
        raise ConfigError(f"{where} is a {type(row).__name__}, not an object; fix or remove it")
    for key in (prompt_field, answer_field):
        value = get_field(row, key)
        if value is MISSING:
            raise ConfigError(
                f"{where} has no field {key!r} (fields: {', '.join(sorted(row))}); "
                "set task.data.prompt_field / task.data.answer_field (a dotted path reaches nested fields)"
            )
        if value is None or not str(value).strip() or (isinstance(value, (list, dict)) and not value):
            raise ConfigError(f"{where} has an empty {key!r}; fix or remove that record")
    prompt = get_field(row, prompt_field)
    if isinstance(prompt, list) and not is_conversation(prompt):
        raise ConfigError(
            f'{where}: {prompt_field!r} is a list but not a list of {{"role", "content"}} messages with string '
            "values; give a string or chat messages"
        )
    if not isinstance(prompt, (str, list)):
        raise ConfigError(
            f"{where}: {prompt_field!r} is a {type(prompt).__name__}, not a string or a list of "
            '{"role", "content"} messages; fix that record'
        )


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
    eval_prompts: int = -1  # -1: not given (old callers)

    def line(self) -> str:
        head = f"data gate: {self.train_prompts} training prompts; {self.duplicates_removed} duplicates removed; "
        if self.eval_prompts == 0:
            return head + "no eval set (overlap not checked)"
        return head + (
            f"{self.overlapping} overlap the eval set (word {NGRAM}-grams){'; dropped' if self.dropped else ''}"
        )


def no_eval_warning(cfg: TaskConfig) -> str:
    """What to say when the run has no held-out prompts at all."""
    d = cfg.data
    if cfg.name == "math" and not d.eval_path and not d.eval_frac:
        return (
            f"no held-out eval: task.data.eval_path is not set, so this run measures nothing on unseen prompts; set "
            f"task.data.eval_path=FILE, or task.data.eval_frac=0.05 to hold out a seeded 5% of {d.path or 'the data'}"
        )
    return "no held-out eval: the run has no eval prompts (eval.prompts=0 and no eval.benchmarks)"


def gate_train_set(
    cfg: TaskConfig, train: list[Prompt], bench: list[Prompt], duplicates_already_removed: int = 0
) -> tuple[list[Prompt], GateReport]:
    """Apply the gate to the training prompts; prints one report line (and the MATH warning when it applies)."""
    warning = contamination_warning(cfg)
    if warning:
        print(f"two-grpo: warning: {warning}", file=sys.stderr, flush=True)
    if not bench:
        print(f"two-grpo: warning: {no_eval_warning(cfg)}", file=sys.stderr, flush=True)
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
    report = GateReport(len(kept), dups + duplicates_already_removed, len(overlap), dropped, len(bench))
    print(report.line(), flush=True)
    return kept, report
