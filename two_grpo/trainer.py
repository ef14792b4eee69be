"""The training loop, top to bottom: one function per phase, timers and budget counters; no formulas here.

Per rollout batch: sample P prompts -> generate G rollouts each -> score -> advantages -> collate ->
(old log-probs when U > 1) -> U = P/M optimizer steps, one per mini-batch of M prompts -> weight sync.
One metrics.jsonl line per optimizer step. Phase times on a line are the seconds spent since the previous
line, so summing a column gives the run's total per phase.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from two_grpo.algo.advantages import compute_advantages
from two_grpo.batch import Prompt, Rollout, collate, split_groups
from two_grpo.config import Derived, TrainConfig, derive
from two_grpo.console import ProgressView, print_engine, print_header, print_summary
from two_grpo.evaluate import evaluate
from two_grpo.learner import make_learner
from two_grpo.models import load_model, load_tokenizer, resolve_model_path
from two_grpo.rewards import RewardScorer
from two_grpo.rollout import Sampling, engine_report, make_engine
from two_grpo.sampler import PromptSampler
from two_grpo.tasks import make_task
from two_grpo.tracking import PHASES, Tracker


class Timers:
    def __init__(self) -> None:
        self.since_log: dict[str, float] = defaultdict(float)
        self.total: dict[str, float] = defaultdict(float)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        self.since_log[name] += dt
        self.total[name] += dt

    def pop(self) -> dict[str, float]:
        out = {f"time/{p}": self.since_log.pop(p, 0.0) for p in PHASES}
        self.since_log.clear()
        return out


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def sampling_seed(run_seed: int, rollout_batch: int) -> int:
    """Per-rollout-batch sampling seed, derived from the run seed and the batch index (resume-safe)."""
    return (run_seed * 1_000_003 + rollout_batch * 7919) % (2**31 - 1)


def rollout_metrics(
    rollouts: list[Rollout], zero_var: torch.Tensor, n_timeouts: int, n_errors: int
) -> dict[str, float]:
    n = max(len(rollouts), 1)
    groups = {r.group_id for r in rollouts}
    zero_groups = {r.group_id for r, z in zip(rollouts, zero_var.tolist()) if z}
    advs = torch.tensor([r.advantage for r in rollouts])
    return {
        "rollout/reward_mean": sum(r.reward for r in rollouts) / n,
        "rollout/solve_rate": sum(r.reward == 1.0 for r in rollouts) / n,
        "rollout/response_tokens_mean": sum(len(r.token_ids) for r in rollouts) / n,
        "rollout/truncated_frac": sum(r.finish_reason == "length" for r in rollouts) / n,
        "rollout/zero_var_group_frac": len(zero_groups) / max(len(groups), 1),
        "rollout/reward_timeouts": float(n_timeouts),
        "rollout/reward_errors": float(n_errors),
        "adv/abs_mean": float(advs.abs().mean()) if len(advs) else 0.0,
        "adv/std": float(advs.std(unbiased=False)) if len(advs) else 0.0,
    }


class Budget:
    """Counters of what the run has spent, and the stopping test against cfg.budget."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg.budget
        self.steps = self.rollouts = self.tokens = 0
        self.t_start = time.time()

    def exhausted(self, epochs_done: float) -> bool:
        b = self.cfg
        return bool(
            (b.max_steps and self.steps >= b.max_steps)
            or (b.max_epochs and epochs_done >= b.max_epochs)
            or (b.max_rollouts and self.rollouts >= b.max_rollouts)
            or (b.max_tokens and self.tokens >= b.max_tokens)
            or (b.max_wallclock_s and time.time() - self.t_start >= b.max_wallclock_s)
        )

    def as_metrics(self) -> dict[str, int]:
        return {
            "budget/rollouts_total": self.rollouts,
            "budget/tokens_generated_total": self.tokens,
            "budget/optimizer_steps": self.steps,
        }


def train(cfg: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """Run one training job into `run_dir`; returns the closing summary."""
    if cfg.learner.threads > 0:
        torch.set_num_threads(cfg.learner.threads)
    seed_everything(cfg.seed)
    model_path = resolve_model_path(cfg.model)
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code)
    task = make_task(cfg.task, tokenizer)
    train_set = task.train_prompts()
    eval_set = task.eval_prompts(cfg.eval.prompts)
    derived = derive(cfg, len(train_set))
    (run_dir / "derived.json").write_text(json.dumps(derived.as_dict(), indent=2))
    print_header(str(run_dir), model_path, derived.as_dict(), cfg)

    model = load_model(model_path, cfg.model)
    engine = make_engine(cfg, model, tokenizer, model_path)
    engine_info = engine_report(engine, cfg)
    print_engine(engine_info)
    learner = make_learner(cfg, model)
    scorer = RewardScorer(task, cfg.task.reward_timeout_s, cfg.task.reward_workers)
    sampler = PromptSampler(len(train_set), cfg.prompts_per_rollout, cfg.seed)
    tracker = Tracker(
        run_dir, cfg.logger.backend, cfg.logger.project, OmegaConf.to_container(OmegaConf.structured(cfg)), cfg.run_id
    )
    timers, budget = Timers(), Budget(cfg)
    history: list[dict[str, Any]] = []
    view = ProgressView(derived.total_steps, cfg.logger.progress, cfg.logger.print_every)
    summary: dict[str, Any] = {}
    try:
        with timers.phase("eval"):
            eval_start = run_eval(engine, scorer, eval_set, cfg)
        rollout_batch = 0
        while not budget.exhausted(sampler.epochs_done):
            history += rollout_step(
                cfg, derived, rollout_batch, train_set, sampler, engine, scorer, learner, tracker, timers, budget, view
            )
            rollout_batch += 1
            if cfg.eval.every_steps and budget.steps % cfg.eval.every_steps == 0 and history:
                with timers.phase("eval"):
                    history[-1].update(run_eval(engine, scorer, eval_set, cfg))
        with timers.phase("eval"):
            eval_end = run_eval(engine, scorer, eval_set, cfg)
        summary = make_summary(history, eval_start, eval_end, budget, timers, sampler.epochs_done, learner)
        summary.update(engine_info)
        tracker.write_json("summary.json", summary)
    finally:
        view.close()
        tracker.close()
        scorer.close()
    print_summary(summary)
    return summary


def run_eval(engine, scorer, eval_set: list[Prompt], cfg: TrainConfig) -> dict[str, float]:
    return evaluate(engine, scorer, eval_set, cfg.eval, cfg.rollout.max_response_tokens, seed=cfg.seed + 17)


def rollout_step(
    cfg: TrainConfig,
    derived: Derived,
    rollout_batch: int,
    train_set: list[Prompt],
    sampler: PromptSampler,
    engine,
    scorer: RewardScorer,
    learner,
    tracker: Tracker,
    timers: Timers,
    budget: Budget,
    view: ProgressView,
) -> list[dict[str, Any]]:
    """One rollout batch and its U optimizer steps; returns the metrics lines it logged."""
    t_step = time.perf_counter()
    prompts = [train_set[i] for i in sampler.next_batch()]
    by_id = {p.prompt_id: p for p in prompts}
    sampling = Sampling(
        n=cfg.group_size,
        temperature=cfg.rollout.temperature,
        top_p=cfg.rollout.top_p,
        top_k=cfg.rollout.top_k,
        max_new_tokens=cfg.rollout.max_response_tokens,
        seed=sampling_seed(cfg.seed, rollout_batch),
    )
    group_ids = [rollout_batch * cfg.prompts_per_rollout + i for i in range(len(prompts))]
    with timers.phase("rollout"):
        rollouts = engine.generate(prompts, group_ids, sampling)
    with timers.phase("reward"):
        report = scorer.score(rollouts, by_id)
        rewards = torch.tensor(report.rewards, dtype=torch.float32)  # [R]
        adv, zero_var = compute_advantages(
            rewards,
            torch.tensor([r.group_id for r in rollouts]),
            cfg.algo.advantage,
            cfg.algo.adv_std,
            cfg.algo.adv_eps,
        )
        for r, reward, a in zip(rollouts, report.rewards, adv.tolist()):
            r.reward, r.advantage = reward, a
    if report.first_failures:
        tracker.dump_failures(budget.steps + 1, report.first_failures)
    budget.rollouts += len(rollouts)
    budget.tokens += sum(len(r.token_ids) for r in rollouts)
    shared = rollout_metrics(rollouts, zero_var, report.timeouts, report.errors)
    keep = [r for r, z in zip(rollouts, zero_var.tolist()) if not (cfg.algo.drop_zero_var_groups and z)]
    minibatches = split_groups(keep, derived.updates_per_rollout_batch)
    batches = [collate(mb, engine.pad_id) if mb else None for mb in minibatches]
    with timers.phase("logprob"):
        if derived.updates_per_rollout_batch > 1:  # later mini-batches are off-policy: ratio vs the sampler
            batches = [b.with_logprobs(old_logp=learner.logprobs(b)) if b is not None else None for b in batches]
        if cfg.algo.kl_coef > 0:
            batches = [b.with_logprobs(ref_logp=learner.ref_logprobs(b)) if b is not None else None for b in batches]
    lines: list[dict[str, Any]] = []
    for u, mb in enumerate(batches):
        with timers.phase("learner"):
            step_metrics = learner.train_minibatch(mb) if mb is not None else {"optim/skipped": 1.0}
        budget.steps += 1
        if u == len(batches) - 1 and not engine.shares_learner_weights():
            with timers.phase("sync"):
                engine.load_weights(learner.named_weights())
        line = {
            "step": budget.steps,
            "rollout_batch": rollout_batch,
            "epoch": sampler.epochs_done,
            **shared,
            **step_metrics,
            **timers.pop(),
            **budget.as_metrics(),
        }
        line["time/step"] = time.perf_counter() - t_step
        t_step = time.perf_counter()
        tracker.log(line)
        view.update(line)
        lines.append(line)
        if cfg.logger.dump_rollouts_every and budget.steps % cfg.logger.dump_rollouts_every == 0:
            tracker.dump_rollouts(budget.steps, rollouts, by_id)
        if cfg.budget.max_steps and budget.steps >= cfg.budget.max_steps:
            break
    return lines


def make_summary(
    history: list[dict[str, Any]],
    eval_start: dict[str, float],
    eval_end: dict[str, float],
    budget: Budget,
    timers: Timers,
    epochs_done: float,
    learner,
) -> dict[str, Any]:
    """Solve rate at start and end (first 10% vs last 20% of steps, and held-out eval), budget, time per phase."""
    n = len(history)
    first = history[: max(1, n // 10)]
    last = history[n - max(1, n // 5) :]

    def mean(rows: list[dict[str, Any]], key: str) -> float:
        return sum(r[key] for r in rows) / max(len(rows), 1)

    out: dict[str, Any] = {
        "optimizer_steps": budget.steps,
        "rollouts": budget.rollouts,
        "tokens_generated": budget.tokens,
        "epochs": round(epochs_done, 4),
        "solve_rate_first10pct": mean(first, "rollout/solve_rate"),
        "solve_rate_last20pct": mean(last, "rollout/solve_rate"),
        "skipped_updates": getattr(learner, "skipped_updates", 0),
        "wallclock_s": time.time() - budget.t_start,
    }
    out.update({f"{k} (start)": v for k, v in eval_start.items()})
    out.update({f"{k} (end)": v for k, v in eval_end.items()})
    out.update({f"time/{p}_total_s": timers.total.get(p, 0.0) for p in PHASES})
    return out
