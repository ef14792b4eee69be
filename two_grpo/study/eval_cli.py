"""`two-grpo eval [RUN_DIR | MODEL_DIR] [KEY=VALUE ...]`: evaluate a trained run's final weights or any model.

    two-grpo eval runs/<run_id>                         the run's final/ weights, with the run's own overrides
    two-grpo eval runs/<run_id> eval=math_suite         ... on the paper's five benchmarks
    two-grpo eval model.path=Qwen/Qwen2.5-Math-1.5B eval=math_suite eval.samples_per_prompt=4

The config is `two-grpo train`'s (same keys, eval.* picks benchmarks and sampling); nothing is trained.
A run is evaluated with the rollout engine it trained with (its summary.json), unless `rollout=...` says otherwise:
two engines draw different samples from the same seed, so their numbers differ by sampling noise.
Results: a table on the terminal and `<run_dir>/eval/eval-<time>.json` (or `runs/eval-<time>/eval.json`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from two_grpo.models.final_model import FINAL_DIR

DROP_FROM_RUN = ("hydra.", "run_id=", "model.path=", "resume=")
ENGINE_KEYS = ("rollout=", "rollout.backend=")


def _fail(msg: str) -> int:
    print(f"two-grpo: error: {msg}", file=sys.stderr)
    return 2


def resolve_target(target: str) -> tuple[list[str], Path, Path] | str:
    """(overrides from the run, model folder, output file) for a run dir or a model folder; a str is an error."""
    p = Path(target)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if (p / "config.yaml").is_file() and (p / "overrides.txt").is_file():
        final = p / FINAL_DIR
        if not (final / "config.json").is_file():
            return f"{p}: no {FINAL_DIR}/ weights (the run has not finished); give a finished run or a model folder"
        lines = (p / "overrides.txt").read_text().splitlines()
        return [o for o in lines if o and not o.startswith(DROP_FROM_RUN)], final, p / "eval" / f"eval-{stamp}.json"
    if (p / "config.json").is_file():
        return [], p, Path("runs") / f"eval-{stamp}" / "eval.json"
    return f"{target}: neither a run dir (config.yaml + {FINAL_DIR}/) nor a model folder (config.json)"


def run_engine(run_dir: Path) -> str | None:
    """The engine a run trained with: summary.json's `rollout_backend`, else its config's explicit backend."""
    summary = run_dir / "summary.json"
    if summary.is_file():
        try:
            engine = json.loads(summary.read_text()).get("rollout_backend")
        except (OSError, ValueError):
            engine = None
        if engine:
            return str(engine)
    from two_grpo.run.resume import load_saved_config

    try:
        backend = load_saved_config(run_dir).rollout.backend
    except Exception:
        return None
    return backend if backend != "auto" else None


def cmd_eval(argv: list[str]) -> int:
    from two_grpo.config.compose import compose, format_config_error, is_config_exception, to_train_config
    from two_grpo.config.schema import ConfigError

    if "--help" in argv or "-h" in argv:
        print(__doc__)
        return 0
    overrides, out = list(argv), None
    engine_note = "from rollout.backend; auto = vllm when it is installed, else hf"
    if argv and "=" not in argv[0]:
        resolved = resolve_target(argv[0])
        if isinstance(resolved, str):
            return _fail(resolved)
        run_overrides, model_dir, out = resolved
        overrides = [*run_overrides, f"model.path={model_dir.resolve()}", *argv[1:]]
        engine = run_engine(Path(argv[0]))
        if engine and not any(a.startswith(ENGINE_KEYS) for a in argv[1:]):
            overrides.append(f"rollout.backend={engine}")
            engine_note = f"the run's own engine, from {Path(argv[0]) / 'summary.json'}; rollout=... to change it"
    try:
        cfg = compose(overrides)
        if not cfg.run_id:
            cfg.run_id = "eval"
        typed = to_train_config(cfg)
    except ConfigError as exc:
        return _fail(str(exc))
    except Exception as exc:
        if not is_config_exception(exc):
            raise
        return _fail(format_config_error(exc, overrides))
    if out is None:
        out = Path("runs") / f"eval-{time.strftime('%Y%m%d-%H%M%S')}" / "eval.json"
    from two_grpo.rollout import resolve_backend

    try:
        engine = resolve_backend(typed)
        print(f"two-grpo eval: engine {engine} ({engine_note})", flush=True)
        metrics = run_eval_only(typed)
    except ConfigError as exc:
        return _fail(str(exc))
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"model": typed.model.path, "engine": engine, "overrides": overrides, "metrics": metrics}
    out.write_text(json.dumps(record, indent=2))
    print_metrics(metrics)
    print(f"written: {out}")
    return 0


def run_eval_only(cfg) -> dict[str, float]:
    """Load the model and engine that training would use, run the eval suite once, return its metrics."""
    from two_grpo.config.schema import ConfigError
    from two_grpo.models.loading import load_model, load_tokenizer, resolve_model_path
    from two_grpo.rollout import make_engine
    from two_grpo.study.evaluate import Evaluator, evaluate_suite, load_benchmarks
    from two_grpo.tasks import check_data_files, make_task
    from two_grpo.tasks.rewards import RewardScorer, plugin_parts

    check_data_files(cfg.task, cfg.eval.benchmarks)  # before a model build
    model_path = resolve_model_path(cfg.model, task=cfg.task)
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code)
    task = make_task(cfg.task, tokenizer)
    scorer = RewardScorer(task, cfg.task.reward_timeout_s, cfg.task.reward_workers, plugin_parts(cfg.task))
    evaluator = Evaluator(cfg, load_benchmarks(cfg, tokenizer, task, scorer), None, scorer)
    try:
        if not evaluator.suite:
            raise ConfigError("nothing to evaluate: set eval.prompts > 0 or add eval.benchmarks (eval=math_suite)")
        engine = make_engine(cfg, load_model(model_path, cfg.model), tokenizer, model_path)
        return evaluate_suite(engine, evaluator.suite, cfg, seed=cfg.seed + 17)
    finally:
        evaluator.close()
        scorer.close()


def print_metrics(metrics: dict[str, float]) -> None:
    from rich.table import Table

    from two_grpo.run.console import console

    rows: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        _, bench, metric = key.split("/", 2)
        rows.setdefault(bench, {})[metric] = value
    cols = sorted({m for r in rows.values() for m in r if not m.startswith("zero_var")})
    t = Table(title="eval")
    t.add_column("benchmark")
    for c in cols:
        t.add_column(c, justify="right")
    for bench, r in rows.items():
        t.add_row(bench, *(f"{100 * r[c]:.2f}" if c in r else "" for c in cols))
    console.print(t)
