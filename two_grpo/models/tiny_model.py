"""Build the embedded default model `builtin:tiny` locally, with no hub access.

A character-level tokenizer (printable ASCII) and a ~0.8 M-parameter Qwen2 causal LM, warm-started by a short
supervised run on fresh problems of a task with gold answers (default: the built-in arithmetic task's shapes;
any task with `sft_pairs`, e.g. reasoning_gym, via `two-grpo build-model task=...`). The warm start is short on
purpose: the model answers in the right format (an integer, then EOS) and solves the easy shapes, but samples
wrong digits on the harder ones at temperature 1, so per-prompt solve rates spread and GRPO has correctness to
improve. (`restate_frac` > 0 plants the old format defect, answers restated as `46 46`; off by default.)
Built once into a cache folder keyed by the recipe (which includes the task's shape keys), written to a
temporary folder and renamed whole, so an interrupted build is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class TinyRecipe:
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 128
    sft_steps: int = 4500
    sft_batch: int = 128
    sft_lr: float = 3e-3
    task: str = ""  # the warm-start task (`task_spec`); "" = the default arithmetic task
    restate_frac: float = 0.0  # share of SFT answers followed by a restatement (" 46 46") the exact checker rejects
    # SFT target of each answer digit: (1 - s) on the right digit + s spread over the 10 digits. The model learns
    # the right answer as its most likely one but samples wrong digits at temperature 1; RL's first gain is to
    # sharpen onto its own best answer (correctness under sampling; format stays right: a digit is a digit).
    digit_smoothing: float = 0.35
    smoothing_at: str = "all"  # all: every answer digit | last: only the answer's last digit (one noisy decision)
    smoothing_from_step: int = 0  # smooth only from this SFT step on: plain SFT learns the answers, the end flattens
    smoothing_to: str = "uniform"  # uniform: s over the 10 digits | neighbors: s/2 on each of d-1 and d+1 (mod 10)
    seed: int = 0
    version: int = 4

    def task_name(self) -> str:
        return json.loads(self.task)["name"] if self.task else "toy_arith"

    def key(self) -> str:
        """Cache key: a hash of the recipe with `task` resolved ("" -> the default task's spec, which follows
        ArithConfig's defaults), so the same warm-start data always gives the same key and new defaults a new one."""
        fields = {**asdict(self), "task": self.task or task_spec(None)}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def default_cache_dir() -> Path:
    return Path(os.environ.get("TWO_GRPO_CACHE") or Path.home() / ".cache" / "two_grpo")


def build_tokenizer():  # -> PreTrainedTokenizerFast
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = [chr(i) for i in range(32, 127)] + ["\n"]
    vocab = {t: i for i, t in enumerate(SPECIALS + chars)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIALS)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.chat_template = (
        "{% for m in messages %}{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}A: {% endif %}"
    )
    return fast


def task_spec(task_cfg: Any) -> str:
    """The part of a task config that fixes the warm-start data (canonical JSON, part of the model key), or ""
    when the task has no generator of gold answers (then the default arithmetic warm start is used)."""
    if task_cfg is None or task_cfg.name == "toy_arith":
        arith = asdict(task_cfg.arith) if task_cfg is not None else None
        if arith is None:
            from two_grpo.config.schema import ArithConfig

            arith = asdict(ArithConfig())
        return json.dumps({"name": "toy_arith", "arith": {k: arith[k] for k in _ARITH_SHAPE_KEYS}}, sort_keys=True)
    if task_cfg.name == "reasoning_gym":
        rg = {k: v for k, v in asdict(task_cfg.rg).items() if k in ("dataset", "config", "seed", "template")}
        return json.dumps({"name": "reasoning_gym", "rg": rg}, sort_keys=True, default=str)
    return ""


_ARITH_SHAPE_KEYS = (
    "min_digits",
    "max_digits",
    "min_operand",
    "max_operand",
    "operators",
    "mul_max_digits",
    "chain_frac",
)


def sft_pairs_for(spec: str, n: int, seed: int) -> list[tuple[str, str]]:
    """`n` (prompt text, gold answer text) pairs of the task named by `spec` (see `task_spec`)."""
    from two_grpo.config.schema import ArithConfig, RGConfig, TaskConfig
    from two_grpo.tasks import make_task

    d = json.loads(spec or task_spec(None))
    if d["name"] == "toy_arith":  # exclude a generous held-out and OOD set (more than any eval uses by default)
        cfg = TaskConfig(
            name="toy_arith", arith=ArithConfig(**d["arith"], train_prompts=0, eval_prompts=1024, ood_eval_prompts=512)
        )
    else:
        cfg = TaskConfig(name=d["name"], rg=RGConfig(**d["rg"], train_size=0, eval_size=1024))
    return make_task(cfg, None).sft_pairs(n, seed)


def digit_smoothed_nll(logits, targets, digits, smoothing: float, to: str = "uniform", at=None):
    """Per-position loss [B, T]: cross-entropy, where the target is a digit against (1 - s) one-hot + s spread
    (`to`: uniform over the 10 digits, or neighbors: s/2 on each of the digits one below and one above, mod 10)
    (logits [B, T, V], targets [B, T], digits [10] token ids, in digit order; `at` [B, T] bool: smooth only
    there, None = every digit)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # [B, T]
    if smoothing <= 0:
        return nll
    is_digit = torch.isin(targets, digits)  # [B, T]
    if at is not None:
        is_digit = is_digit & at
    if to == "uniform":
        spread = -logp[..., digits].mean(-1)  # [B, T]: cross-entropy against uniform digits
    elif to == "neighbors":
        value = (targets[..., None] == digits).long().argmax(-1)  # [B, T]: the target's digit value (0 if none)
        below, above = digits[(value - 1) % 10], digits[(value + 1) % 10]
        spread = -0.5 * (logp.gather(-1, below.unsqueeze(-1)) + logp.gather(-1, above.unsqueeze(-1))).squeeze(-1)
    else:
        raise ValueError(f"smoothing_to={to!r}: use uniform or neighbors")
    return torch.where(is_digit, (1 - smoothing) * nll + smoothing * spread, nll)


def last_answer_token_mask(rows: list[list[int]], length: int):
    """[B, length - 1] bool over the shifted targets: True at each row's last token before its final EOS."""
    at = torch.zeros(len(rows), length - 1, dtype=torch.bool)
    for i, r in enumerate(rows):
        at[i, len(r) - 3] = True  # r = prompt + answer + [eos]; target j is r[j + 1], so r[-2] is target len - 3
    return at


def _sft(model, tokenizer, recipe: TinyRecipe, progress: Callable[[int, int], None] | None) -> None:
    """Teacher-forced training on `prompt` -> `answer</s>`, loss on the answer tokens only, on fresh task data
    (never an eval question). Short on purpose: the model solves easy shapes, guesses on hard ones."""
    pairs = sft_pairs_for(recipe.task, recipe.sft_steps * recipe.sft_batch, recipe.seed)
    rng = random.Random(recipe.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.sft_lr, weight_decay=0.0)
    eos = tokenizer.eos_token_id
    digits = torch.tensor(tokenizer.convert_tokens_to_ids(list("0123456789")))
    model.train()
    for step in range(recipe.sft_steps):
        rows, masks = [], []
        for q, a in pairs[step * recipe.sft_batch : (step + 1) * recipe.sft_batch]:
            q_ids = tokenizer.convert_tokens_to_ids(list(q))  # character-level vocabulary
            target = f"{a} {a}" if recipe.restate_frac and rng.random() < recipe.restate_frac else a
            a_ids = tokenizer.convert_tokens_to_ids(list(target)) + [eos]
            rows.append((q_ids + a_ids)[: recipe.max_position_embeddings])
            masks.append(([0] * len(q_ids) + [1] * len(a_ids))[: recipe.max_position_embeddings])
        length = max(map(len, rows))
        ids = torch.tensor([r + [0] * (length - len(r)) for r in rows])
        mask = torch.tensor([m + [0] * (length - len(m)) for m in masks], dtype=torch.float32)
        attn = (torch.arange(length)[None, :] < torch.tensor([len(r) for r in rows])[:, None]).long()
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
        at = last_answer_token_mask(rows, length) if recipe.smoothing_at == "last" else None
        smoothing = recipe.digit_smoothing if step >= recipe.smoothing_from_step else 0.0
        nll = digit_smoothed_nll(logits, ids[:, 1:], digits, smoothing, recipe.smoothing_to, at)
        loss = (nll * mask[:, 1:]).sum() / mask[:, 1:].sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for g in opt.param_groups:  # short warm-up, then linear decay to 0 (the anneal sharpens the model)
            g["lr"] = recipe.sft_lr * min(1.0, (step + 1) / 50) * (1 - step / recipe.sft_steps)
        opt.step()
        if os.environ.get("TWO_GRPO_DEBUG") and step % 100 == 0:
            print(step, float(loss))
        if progress:
            progress(step + 1, recipe.sft_steps)
    model.eval()


def tiny_config(recipe: TinyRecipe, tokenizer: Any = None):  # -> Qwen2Config
    """The config of the model `build` makes from `recipe` (with the character tokenizer's vocabulary)."""
    from transformers import Qwen2Config

    tokenizer = tokenizer or build_tokenizer()
    return Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_hidden_layers,
        num_attention_heads=recipe.num_attention_heads,
        num_key_value_heads=recipe.num_key_value_heads,
        max_position_embeddings=recipe.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build(out_dir: Path, recipe: TinyRecipe, progress: Callable[[int, int], None] | None = None) -> Path:
    """Build the tokenizer and model, SFT them, and save to `out_dir` (atomically; a complete build already there,
    e.g. by a concurrent process, is kept and never deleted under its readers)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(recipe.seed)
    tokenizer = build_tokenizer()
    model = AutoModelForCausalLM.from_config(tiny_config(recipe, tokenizer), dtype=torch.float32)
    _sft(model, tokenizer, recipe, progress)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
    try:
        from two_grpo.models.final_model import save_quietly

        save_quietly(model, tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "two_grpo_recipe.json").write_text(json.dumps(asdict(recipe), indent=2))
        if (out_dir / "two_grpo_recipe.json").exists():  # a concurrent build (sweep member, test worker) finished
            return out_dir  # first and may be in use: keep it, drop ours
        if out_dir.exists():  # a stale or partial directory
            shutil.rmtree(out_dir)
        try:
            os.replace(tmp, out_dir)
        except OSError:  # lost the race between the check and the rename: the other build is complete
            if not (out_dir / "two_grpo_recipe.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def recipe_for(task_cfg: Any = None) -> TinyRecipe:
    """The builtin:tiny recipe for a task config: warm-started on that task when it has gold answers."""
    spec = task_spec(task_cfg)
    return TinyRecipe(task=spec if spec != task_spec(None) else "")


def ensure_built(cache_dir: str = "", recipe: TinyRecipe | None = None, quiet: bool = False) -> Path:
    """Path of the cached builtin:tiny model, building it (with a progress bar) when missing."""
    recipe = recipe or TinyRecipe()
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    out = root / f"tiny-{recipe.task_name()}-{recipe.key()}"
    if (out / "two_grpo_recipe.json").exists():
        return out
    with _build_lock(out, quiet):  # one build per machine: racing processes wait for it instead of repeating it
        if (out / "two_grpo_recipe.json").exists():  # built by the process we waited for
            return out
        return _build_with_progress(out, recipe, quiet)


@contextmanager
def _build_lock(out: Path, quiet: bool):
    """Hold `<out>.lock` (an OS file lock, released if the holder dies) while building `out`."""
    from filelock import FileLock, Timeout

    out.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{out}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not quiet:
            print(f"waiting for another process to finish building builtin:tiny -> {out}", flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _build_with_progress(out: Path, recipe: TinyRecipe, quiet: bool) -> Path:
    if quiet:
        return build(out, recipe)
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    t0 = time.time()
    with Progress(
        TextColumn(f"building builtin:tiny for {recipe.task_name()} (one time)"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} SFT steps"),
        TimeRemainingColumn(),
    ) as bar:
        job = bar.add_task("sft", total=recipe.sft_steps)
        build(out, recipe, progress=lambda done, total: bar.update(job, completed=done))
    print(f"built builtin:tiny in {time.time() - t0:.0f}s -> {out}")
    return out
