"""MATH / DAPO-Math / GSM8K-style task: records from a HF dataset name, a parquet or a JSONL file, a prompt
template (the model's chat template when it has one), and the final answer checked with math-verify.

Scoring runs in worker processes (`sandboxed = True`) because sympy can hang on hostile output.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import replace
from typing import Any

from two_grpo.config.schema import ConfigError, DataConfig
from two_grpo.data.batch import Prompt
from two_grpo.data.gate import check_record, get_field, normalize


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (balanced braces) in `text`, or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    i, depth = start + len("\\boxed{"), 1
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j]
    return None


def math_verify_score(gold: str, completion: str) -> float:
    """1.0 when math-verify finds the completion's final answer equal to `gold`, else 0.0. Never raises on
    malformed output (returns 0.0); call it in a worker process, where math-verify's SIGALRM timeouts work."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

    gold_text = gold if "\\boxed" in gold or "$" in gold else f"${gold}$"
    gold_parsed = parse(gold_text, extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()])
    if not gold_parsed:
        return 0.0
    pred = parse(completion, extraction_config=[LatexExtractionConfig(), ExprExtractionConfig()])
    return 1.0 if pred and verify(gold_parsed, pred) else 0.0


LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")


def check_local_file(path: str, key: str = "task.data.path") -> None:
    """ConfigError naming `key` when `path` names a local data file (.jsonl/.json/.parquet) that does not exist."""
    if path.endswith(LOCAL_SUFFIXES) and not os.path.isfile(path):
        raise ConfigError(f"{key}={path!r}: file not found; give an existing .jsonl/.parquet file or a HF dataset name")


def load_records(path: str, split: str) -> list[dict[str, Any]]:
    """Rows of a .jsonl / .parquet file, or of a HF dataset `path` (needs the `datasets` package)."""
    return load_records_with_lines(path, split)[0]


def load_records_with_lines(path: str, split: str) -> tuple[list[Any], list[int] | None]:
    """(rows, each row's line number in a JSONL file, or None for other sources)."""
    if path.endswith(".jsonl") or path.endswith(".json"):
        check_local_file(path)
        rows, lines = [], []
        try:
            with open(path, encoding="utf-8") as f:
                for n, line in enumerate(f, 1):
                    if line.strip():
                        lines.append(n)
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as exc:
                            raise ConfigError(
                                f"{path}:{n}: not valid JSON ({exc.msg}); fix or remove that line"
                            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"task.data.path={path!r}: unreadable ({type(exc).__name__}); check the file") from None
        return rows, lines
    if path.endswith(".parquet"):
        check_local_file(path)
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist(), None
        except Exception as exc:
            raise ConfigError(f"{path}: unreadable parquet file ({type(exc).__name__}); check the file") from None
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            f"task.data.path={path!r} looks like a HF dataset name, which needs `pip install datasets`; "
            "or give a local .jsonl/.parquet file"
        ) from None
    try:
        return list(datasets.load_dataset(path, split=split)), None
    except Exception as exc:
        raise ConfigError(
            f"task.data.path={path!r} split={split!r}: could not load ({type(exc).__name__}: {exc})"[:300]
        ) from None


EVAL_SPLIT_SEED = 1234  # task.data.eval_frac: the held-out split depends on the file, not on the run seed


class MathTask:
    name = "math"
    sandboxed = True
    score_fn = staticmethod(math_verify_score)

    def __init__(self, cfg: DataConfig, tokenizer: Any):
        self.cfg, self.tokenizer = cfg, tokenizer
        self.duplicates_removed = 0
        self._train = self._load(cfg.path, cfg.split)
        self._eval = self._load(cfg.eval_path, cfg.eval_split) if cfg.eval_path else []
        if cfg.eval_frac > 0:
            self._train, self._eval = held_out_split(self._train, cfg.eval_frac, cfg.path)

    def render(self, question: str | list[dict[str, str]]) -> str:
        """The text the model sees: chat messages through the tokenizer's chat template (as they are, TRL's
        conversational format); a string through `template`, then the chat template when the model has one."""
        has_template = bool(getattr(self.tokenizer, "chat_template", None))
        if isinstance(question, list):
            if not has_template:
                raise ConfigError(
                    f"{self.cfg.path}: the prompts are chat messages but the model's tokenizer has no chat template; "
                    "give string prompts or a model with a chat template"
                )
            return self.tokenizer.apply_chat_template(question, tokenize=False, add_generation_prompt=True)
        body = self.cfg.template.format(problem=question)
        if self.cfg.use_chat_template and has_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": body}], tokenize=False, add_generation_prompt=True
            )
        return body

    def _load(self, path: str, split: str) -> list[Prompt]:
        rows, lines = load_records_with_lines(path, split)
        if not rows:
            raise ConfigError(f"task.data.path={path!r}: no records; point it at a non-empty dataset")
        pf, af = self.cfg.prompt_field, self.cfg.answer_field
        passed_over = {pf, af, pf.split(".")[0], af.split(".")[0], "completion", "answer"}
        prompts: list[Prompt] = []
        seen: set[str] = set()
        for n, row in enumerate(rows, 1):
            check_record(row, n, path, pf, af, lines[n - 1] if lines else None)
            raw_answer = get_field(row, af)
            gold = raw_answer[0] if isinstance(raw_answer, list) and raw_answer else raw_answer  # OlympiadBench
            raw = get_field(row, pf)
            question = "\n".join(m["content"] for m in raw) if isinstance(raw, list) else raw
            answer = str(gold)
            if self.cfg.answer_from_boxed:
                answer = last_boxed(answer) or answer
            key = normalize(question)
            if key in seen:  # duplicate prompts would double-weight a problem
                self.duplicates_removed += 1
                continue
            seen.add(key)
            fields = {k: v for k, v in row.items() if k not in passed_over}
            prompts.append(
                Prompt(prompt_id=len(prompts), text=self.render(raw), answer=answer, question=question, fields=fields)
            )
            if self.cfg.max_prompts and len(prompts) >= self.cfg.max_prompts:
                break
        return prompts

    def train_prompts(self) -> list[Prompt]:
        return self._train

    def eval_prompts(self, n: int) -> list[Prompt]:
        return self._eval[:n]


def held_out_split(prompts: list[Prompt], frac: float, path: str) -> tuple[list[Prompt], list[Prompt]]:
    """(train, eval): a seeded `frac` of the (deduplicated) prompts held out for eval and removed from training;
    both renumbered 0..n-1. The split is the same for every run on the same file."""
    n_eval = max(1, round(frac * len(prompts)))
    if n_eval >= len(prompts):
        raise ConfigError(
            f"task.data.eval_frac={frac}: holds out {n_eval} of {len(prompts)} prompts of {path}, leaving none to "
            "train on; lower it"
        )
    held = set(random.Random(EVAL_SPLIT_SEED).sample(range(len(prompts)), n_eval))
    train = [replace(p, prompt_id=i) for i, p in enumerate(p for j, p in enumerate(prompts) if j not in held)]
    evals = [replace(p, prompt_id=i) for i, p in enumerate(p for j, p in enumerate(prompts) if j in held)]
    return train, evals
