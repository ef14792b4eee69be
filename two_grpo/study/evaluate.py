"""Held-out evaluation: k samples per prompt with the eval sampling settings; Mean@k and unbiased Pass@k.

A suite is the training task's held-out split (`eval.prompts` > 0, named after the task) plus the benchmarks in
`eval.benchmarks` (conf/eval/math_suite.yaml). Metrics: `eval/<bench>/mean@k`, `eval/<bench>/pass@k`, their
average over benchmarks `eval/avg/...`, and `eval/<bench>/zero_var_pred_g<G>`: the zero-variance group fraction
that group size G would see on these prompts, from each prompt's k samples (unbiased, see `zero_var_prob`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from math import comb
from typing import Any

from two_grpo.config.schema import ConfigError, DataConfig, EvalConfig, TrainConfig
from two_grpo.data.batch import Prompt
from two_grpo.data.format_split import format_counts, format_metrics
from two_grpo.rollout.base import RolloutEngine, Sampling
from two_grpo.tasks.rewards import RewardScorer

PREDICT_GROUP_SIZES = (2, 4, 8, 16)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased Pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@k needs k <= n (k={k}, n={n})")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def zero_var_prob(n: int, c: int, group_size: int) -> float:
    """Unbiased estimate of p^G + (1-p)^G (a group of G binary rewards all equal) from n samples, c correct:
    the chance that G of the n samples drawn without replacement are all right or all wrong."""
    if group_size > n:
        raise ValueError(f"zero_var_prob needs group_size <= n (group_size={group_size}, n={n})")
    return (comb(c, group_size) + comb(n - c, group_size)) / comb(n, group_size)


def evaluate(
    engine: RolloutEngine,
    scorer: RewardScorer,
    prompts: list[Prompt],
    cfg: EvalConfig,
    max_new_tokens: int,
    seed: int,
    name: str | None = None,
    outcomes: list[dict[str, Any]] | None = None,
) -> dict[str, float]:
    """`eval/<name>/mean@k` (mean reward), `eval/<name>/pass@k` (reward 1.0 counts as solved) and the predicted
    zero-variance fractions; `name` defaults to the scorer's task. `outcomes`, when given, receives one
    {"benchmark", "prompt_id", "rewards": [k floats]} per prompt (the raw material of paired statistics)."""
    k = cfg.samples_per_prompt
    sampling = Sampling(
        n=k, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, max_new_tokens=max_new_tokens, seed=seed
    )
    rollouts = engine.generate(prompts, list(range(len(prompts))), sampling)  # even for none: may be collective
    if not prompts:
        return {}
    report = scorer.score(rollouts, {p.prompt_id: p for p in prompts})
    per_prompt: dict[int, list[float]] = {}
    for r, reward in zip(rollouts, report.rewards):
        per_prompt.setdefault(r.group_id, []).append(reward)
    mean = sum(report.rewards) / len(report.rewards)
    passk = sum(pass_at_k(len(v), sum(x == 1.0 for x in v), k) for v in per_prompt.values()) / len(per_prompt)
    name = name or scorer.task.name
    if outcomes is not None:
        outcomes += [
            {"benchmark": name, "prompt_id": prompts[i].prompt_id, "rewards": [float(x) for x in v]}
            for i, v in sorted(per_prompt.items())
        ]
    out = {f"eval/{name}/mean@{k}": mean, f"eval/{name}/pass@{k}": passk}
    fmt = format_counts(scorer.task, [r.text for r in rollouts], report.rewards)
    out.update(format_metrics(fmt, f"eval/{name}", "format_ok"))
    for g in PREDICT_GROUP_SIZES:
        if g <= k:
            z = [zero_var_prob(len(v), sum(x == 1.0 for x in v), g) for v in per_prompt.values()]
            out[f"eval/{name}/zero_var_pred_g{g}"] = sum(z) / len(z)
    return out


@dataclass
class Benchmark:
    name: str
    prompts: list[Prompt]
    scorer: RewardScorer
    in_avg: bool = True  # counted in eval/avg/* (a task's extra splits, e.g. toy_arith_ood, are not)


def load_benchmarks(cfg: TrainConfig, tokenizer: Any, task: Any, task_scorer: RewardScorer) -> list[Benchmark]:
    """The held-out split of the training task (if eval.prompts > 0), the task's extra splits (at most
    eval.prompts prompts each; not in eval/avg) and every eval.benchmarks entry."""
    suite: list[Benchmark] = []
    if cfg.eval.prompts > 0:
        suite.append(Benchmark(task.name, task.eval_prompts(cfg.eval.prompts), task_scorer))
        extra = getattr(task, "extra_eval_splits", None)  # e.g. toy_arith_ood: reported beside, not averaged
        for split_name, split_prompts in (extra() if extra is not None else {}).items():
            suite.append(Benchmark(split_name, split_prompts[: cfg.eval.prompts], task_scorer, in_avg=False))
    if cfg.eval.benchmarks:
        from two_grpo.tasks.math_task import MathTask

        math_scorer: RewardScorer | None = None
        for name, b in cfg.eval.benchmarks.items():
            if b.path in ("", "???"):
                raise ConfigError(
                    f"eval.benchmarks.{name}.path is empty; set a HF dataset name or a .jsonl/.parquet file"
                )
            data = DataConfig(
                path=b.path,
                split=b.split,
                prompt_field=b.prompt_field,
                answer_field=b.answer_field,
                answer_from_boxed=b.answer_from_boxed,
                template=cfg.task.data.template,
                use_chat_template=cfg.task.data.use_chat_template,
                max_prompts=b.max_prompts,
            )
            bench_task = MathTask(data, tokenizer)
            if math_scorer is None:
                math_scorer = RewardScorer(bench_task, cfg.task.reward_timeout_s, cfg.task.reward_workers)
            suite.append(Benchmark(name, bench_task.train_prompts(), math_scorer))
    return suite


def evaluate_suite(
    engine: RolloutEngine,
    suite: list[Benchmark],
    cfg: TrainConfig,
    seed: int,
    dist: Any = None,
    outcomes: list[dict[str, Any]] | None = None,
) -> dict[str, float]:
    """Every benchmark of the suite, plus `eval/avg/mean@k` and `eval/avg/pass@k` when there are several.
    With several ranks (`dist`), each rank scores a slice of every benchmark (metrics are means over prompts);
    `outcomes` (per-prompt rewards, see `evaluate`) then holds every rank's prompts, gathered in rank order."""
    from two_grpo.dist.multirank import sharded_eval

    max_new = cfg.eval.max_response_tokens or cfg.rollout.max_response_tokens
    out: dict[str, float] = {}
    mine: list[dict[str, Any]] | None = [] if outcomes is not None else None
    for b in suite:

        def run_one(prompts: list[Prompt], b: Benchmark = b) -> dict[str, float]:
            return evaluate(engine, b.scorer, prompts, cfg.eval, max_new, seed, name=b.name, outcomes=mine)

        out.update(sharded_eval(run_one, b.prompts, dist) if dist is not None else run_one(b.prompts))
    if outcomes is not None and mine is not None:
        active = dist is not None and dist.active
        outcomes += [o for part in dist.all_gather_object(mine) for o in part] if active else mine
    k = cfg.eval.samples_per_prompt
    averaged = [b for b in suite if b.in_avg]
    if len(averaged) > 1:
        for metric in (f"mean@{k}", f"pass@{k}"):
            vals = [out[f"eval/{b.name}/{metric}"] for b in averaged if f"eval/{b.name}/{metric}" in out]
            out[f"eval/avg/{metric}"] = sum(vals) / len(vals)
    return out


OUTCOMES_FILE = "eval_outcomes.jsonl"


class Evaluator:
    """Runs the suite at start, every `eval.every_steps` optimizer steps or `eval.every_rollouts` rollouts and at
    the end; logs one line per eval (Tracker.log_eval: run_dir/eval.jsonl and wandb) with the budget spent so far
    (step, rollouts, tokens, time), and, when `outcomes_path` is set (rank 0), one line per eval prompt to it
    (eval_outcomes.jsonl: step, rollouts, benchmark, prompt_id, the k rewards)."""

    def __init__(
        self,
        cfg: TrainConfig,
        suite: list[Benchmark],
        tracker: Any = None,
        task_scorer: Any = None,
        dist: Any = None,
        outcomes_path: Any = None,
    ):
        self.cfg, self.suite, self.tracker, self.task_scorer, self.dist = cfg, suite, tracker, task_scorer, dist
        self.outcomes_path = outcomes_path

    def due(self, steps_before: int, steps_after: int, rollouts_before: int = 0, rollouts_after: int = 0) -> bool:
        """True when an `every_steps` or `every_rollouts` boundary was crossed (a rollout batch can take several
        steps and many rollouts)."""
        every, every_r = self.cfg.eval.every_steps, self.cfg.eval.every_rollouts
        by_steps = bool(every) and steps_after // every > steps_before // every
        by_rollouts = bool(every_r) and rollouts_after // every_r > rollouts_before // every_r
        return by_steps or by_rollouts

    def run(self, engine: RolloutEngine, budget: Any, timers: Any) -> dict[str, float]:
        if not self.suite:
            return {}
        eval_s_before = timers.total.get("eval", 0.0)
        wall = time.time() - budget.t_start
        outcomes: list[dict[str, Any]] = []
        metrics = evaluate_suite(
            engine, self.suite, self.cfg, seed=self.cfg.seed + 17, dist=self.dist, outcomes=outcomes
        )
        if self.outcomes_path is not None:
            import json

            with open(self.outcomes_path, "a", encoding="utf-8") as f:
                for o in outcomes:
                    line = {"step": budget.steps, "rollouts": budget.rollouts, **o}
                    f.write(json.dumps(line, sort_keys=True) + "\n")
        if self.tracker is not None:
            line = {
                "step": budget.steps,
                "budget/rollouts_total": budget.rollouts,
                "budget/tokens_generated_total": budget.tokens,
                "budget/optimizer_steps": budget.steps,
                "time/wallclock_s": wall,
                "time/train_wallclock_s": wall - eval_s_before,  # excludes time spent evaluating
                **metrics,
            }
            self.tracker.log_eval(line)
        return metrics

    def close(self) -> None:
        """Close the benchmark scorers this suite opened (not the trainer's own)."""
        for scorer in {id(b.scorer): b.scorer for b in self.suite if b.scorer is not self.task_scorer}.values():
            scorer.close()
