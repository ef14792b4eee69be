"""The training loop, top to bottom: one function per phase, timers and budget counters; no formulas here.

Per rollout batch: sample P prompts -> generate G rollouts each -> score -> advantages -> collate ->
(old log-probs when U > 1) -> U = P/M optimizer steps, one per mini-batch of M prompts -> weight sync.
One metrics.jsonl line per optimizer step. Phase times on a line are the seconds spent since the previous
line, so summing a column gives the run's total per phase.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from two_grpo.algo.signal import predicted_zero_var_frac, signal_metrics
from two_grpo.config.schema import ConfigError, Derived, TrainConfig, derive
from two_grpo.data.batch import Prompt, Rollout, collate, split_groups
from two_grpo.data.format_split import format_counts, format_metrics
from two_grpo.data.gate import gate_train_set
from two_grpo.data.resample import resample_zero_var
from two_grpo.data.sampler import PromptSampler
from two_grpo.dist import multirank as mr
from two_grpo.dist.context import init_dist
from two_grpo.learner import make_learner
from two_grpo.models.final_model import save_final
from two_grpo.models.loading import (
    check_positions,
    fit_prompt_tokens,
    load_model,
    load_tokenizer,
    read_model_config,
    resolve_model_path,
)
from two_grpo.models.lora import apply_lora, is_lora, trainable_summary
from two_grpo.rollout import engine_report, make_engine
from two_grpo.rollout.base import train_sampling
from two_grpo.run import engine_log, noise_reference
from two_grpo.run.checkpoint import CheckpointManager, set_rng_state
from two_grpo.run.console import ProgressView, print_engine, print_header, print_summary
from two_grpo.run.guards import NonFiniteGuard, Preempted, PreemptionFlag, ZeroSignalGuard, check_reward_failures
from two_grpo.run.tracking import PHASES, Tracker, peer_metrics
from two_grpo.study.evaluate import OUTCOMES_FILE, Evaluator, load_benchmarks
from two_grpo.tasks import make_task
from two_grpo.tasks.rewards import RewardScorer, plugin_parts


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


def memory_plan_lines(cfg: TrainConfig, model_path: str) -> list[str]:
    """The run's memory plan (two_grpo/run/memory_plan.py) from the resolved model's config; on CUDA a plan over the
    device's memory stops the run."""
    from dataclasses import replace

    from two_grpo.run.memory_plan import check_plan, make_plan

    try:
        plan = make_plan(replace(cfg, model=replace(cfg.model, path=model_path)))
    except ConfigError as exc:  # a hub model not downloaded yet: no config to plan from
        return [f"memory plan skipped: {exc}"]
    check_plan(plan, torch.cuda.is_available(), cfg.plan.enforce)
    return plan.lines()


def train(cfg: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """Run one training job into `run_dir`; returns the closing summary."""
    dist = init_dist()  # world_size 1 without a launcher (torchrun / deepspeed)
    mr.check_topology(cfg, dist)
    if cfg.learner.threads > 0:
        torch.set_num_threads(cfg.learner.threads)
    seed_everything(cfg.seed)
    model_path = resolve_model_path(cfg.model, task=cfg.task)  # checks the folder; builds builtin:tiny if needed
    plan_lines = memory_plan_lines(cfg, model_path)  # refuses (ConfigError) a plan over the GPU, before any load
    hf_config = read_model_config(model_path, cfg.model.trust_remote_code)  # config.json only: no weights yet
    cfg = fit_prompt_tokens(cfg, hf_config)  # rollout.max_prompt_tokens=0 -> positions - longest response
    check_positions(cfg, hf_config)
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code)
    task = make_task(cfg.task, tokenizer)
    train_set = task.train_prompts()
    scorer = RewardScorer(task, cfg.task.reward_timeout_s, cfg.task.reward_workers, plugin_parts(cfg.task))
    suite = load_benchmarks(cfg, tokenizer, task, scorer)  # the held-out split and eval.benchmarks
    eval_prompts = [p for bench in suite for p in bench.prompts]
    train_set, _ = gate_train_set(cfg.task, train_set, eval_prompts, getattr(task, "duplicates_removed", 0))
    ckpts = CheckpointManager(run_dir, cfg.checkpoint.every_steps, cfg.checkpoint.keep_last)
    resume_from = prepare_resume(run_dir, ckpts, dist)
    derived = derive(cfg, len(train_set))
    if dist.is_main:
        (run_dir / "derived.json").write_text(json.dumps(derived.as_dict(), indent=2))
        print_header(str(run_dir), model_path, derived.as_dict(), cfg)
        print("\n".join(plan_lines), flush=True)

    routed = engine_log.route_engine_logs(run_dir, cfg.logger.verbose)  # every rank, before vllm is imported
    if dist.is_main and routed and cfg.rollout.backend != "hf":
        print(f"two-grpo: rollout engine log lines go to {run_dir / engine_log.ENGINE_LOG} (logger.verbose=true: here)")
    model = apply_lora(load_model(model_path, cfg.model), cfg.model.lora)  # model.lora.r == 0: the model itself
    if is_lora(model) and dist.is_main:
        print(f"two-grpo: {trainable_summary(model)}")
    engine = make_engine(cfg, model, tokenizer, model_path)
    engine_info = engine_report(engine, cfg)
    if dist.is_main:
        print_engine(engine_info)
    learner = make_learner(cfg, model, engine.shares_learner_weights())
    sampler = PromptSampler(len(train_set), cfg.prompts_per_rollout, cfg.seed)
    tracker = (
        Tracker(
            run_dir,
            cfg.logger.backend,
            cfg.logger.project,
            OmegaConf.to_container(OmegaConf.structured(cfg)),
            cfg.run_id,
            entity=cfg.logger.entity,
            group=cfg.logger.group,
            tags=list(cfg.logger.tags),
        )
        if dist.is_main
        else mr.NullTracker()
    )
    timers, budget = Timers(), Budget(cfg)
    outcomes_path = run_dir / OUTCOMES_FILE if dist.is_main else None
    evaluator = Evaluator(cfg, suite, tracker, scorer, dist, outcomes_path)
    history: list[dict[str, Any]] = []
    view = (
        ProgressView(derived.total_steps, cfg.logger.progress, cfg.logger.print_every)
        if dist.is_main
        else mr.NullView()
    )
    summary: dict[str, Any] = {}
    guard, preempt = NonFiniteGuard(cfg.learner.max_consecutive_skips), PreemptionFlag().install()
    zero_signal = ZeroSignalGuard(cfg.guards.zero_signal_warn_batches, cfg.guards.zero_signal_stop_batches)
    try:
        if resume_from is not None:
            state = resume_from.trainer_state()
            eval_start, rollout_batch, history = state["eval_start"], state["rollout_batch"], state["history"]
            restore_state(state, resume_from, learner, engine, sampler, budget, timers, guard, dist)
            zero_signal.load_state_dict(state.get("zero_signal", zero_signal.state_dict()))
        else:
            with timers.phase("eval"):
                eval_start = evaluator.run(engine, budget, timers)
                eval_start.update(difficulty_profile(cfg, engine, scorer, train_set, run_dir, "start", dist))
            rollout_batch = 0
        saved_step = resume_from.step if resume_from is not None else -1

        def checkpoint() -> None:
            nonlocal saved_step
            state = trainer_state(rollout_batch, sampler, budget, timers, guard, learner, history, eval_start)
            state["zero_signal"] = zero_signal.state_dict()
            saved_step = save_checkpoint(ckpts, budget.steps, learner, state, saved_step, dist)

        preempted = False
        while not mr.stop_everywhere(budget.exhausted(sampler.epochs_done), dist):
            steps_before, rollouts_before = budget.steps, budget.rollouts
            history += rollout_step(
                cfg, derived, rollout_batch, train_set, sampler, engine, scorer, learner, tracker, timers, budget, view,
                guard=guard, zero_signal=zero_signal,
            )  # fmt: skip
            rollout_batch += 1
            due = evaluator.due(steps_before, budget.steps, rollouts_before, budget.rollouts)
            if due and history and not budget.exhausted(sampler.epochs_done):
                with timers.phase("eval"):
                    history[-1].update(evaluator.run(engine, budget, timers))
            preempted = mr.stop_everywhere(preempt.requested, dist)  # every rank saves and stops together
            if ckpts.due(steps_before, budget.steps) or preempted:
                checkpoint()
            if preempted:
                break
        if saved_step != budget.steps:
            checkpoint()
        if preempted:
            raise Preempted(
                f"preempted by {preempt.signal_name} at step {budget.steps}; checkpoint "
                f"{run_dir / 'checkpoints' / f'step_{saved_step}'}; to resume: {resume_command(run_dir)}"
            )
        with timers.phase("eval"):
            eval_end = evaluator.run(engine, budget, timers)
            if cfg.eval.difficulty_at_end:
                eval_end.update(difficulty_profile(cfg, engine, scorer, train_set, run_dir, "end", dist))
        save_final(final_weights(learner, dist), model, tokenizer, model_path, run_dir, dist.is_main)
        summary = make_summary(history, eval_start, eval_end, budget, timers, sampler.epochs_done, learner)
        summary.update(mr.memory_summary(dist))
        summary.update(engine_info)
        tracker.write_json("summary.json", summary)
    finally:
        preempt.restore()
        view.close()
        evaluator.close()
        tracker.close()
        scorer.close()
    if dist.is_main:
        print_summary(summary)
    return summary


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
    guard: NonFiniteGuard | None = None,
    zero_signal: ZeroSignalGuard | None = None,
) -> list[dict[str, Any]]:
    """One rollout batch and its U optimizer steps; returns the metrics lines it logged."""
    t_step = time.perf_counter()
    dist = init_dist()
    prompts = [train_set[i] for i in sampler.next_batch()]
    by_id = {p.prompt_id: p for p in prompts}
    sampling = train_sampling(cfg, mr.rank_sampling_seed(sampling_seed(cfg.seed, rollout_batch), dist))
    group_ids = [rollout_batch * cfg.prompts_per_rollout + i for i in range(len(prompts))]
    my_prompts, my_group_ids = mr.shard_prompts(prompts, group_ids, cfg.prompts_per_minibatch, dist)
    with timers.phase("rollout"):
        rollouts = engine.generate(my_prompts, my_group_ids, sampling)
    with timers.phase("reward"):
        report = scorer.score(rollouts, by_id)
        for r, reward in zip(rollouts, report.rewards):
            r.reward = reward
    generated, resampled = rollouts, {}
    if cfg.algo.resample_zero_var:  # every extra draw is budgeted below (generated) and timed in its phase
        if dist.active:
            raise ConfigError("algo.resample_zero_var=true runs in a single process for now; drop it or the launcher")
        cap = cfg.algo.resample_max_rollouts or len(rollouts)
        rollouts, drawn, resampled = resample_zero_var(
            rollouts, rollout_batch=rollout_batch, train_set=train_set, sampler=sampler, engine=engine, scorer=scorer,
            by_id=by_id, sampling=sampling, timers=timers, report=report, max_extra_rollouts=cap,
        )  # fmt: skip
        generated = generated + drawn
    with timers.phase("reward"):
        rewards = torch.tensor([r.reward for r in rollouts], dtype=torch.float32)  # [R]
        adv, zero_var = mr.global_advantages(rewards, torch.tensor([r.group_id for r in rollouts]), cfg, dist)
        for r, a in zip(rollouts, adv.tolist()):
            r.advantage = a
    if report.first_failures:
        tracker.dump_failures(budget.steps + 1, report.first_failures)
    n_rollouts, n_tokens = mr.global_counts(generated, dist)
    budget.rollouts += n_rollouts
    budget.tokens += n_tokens
    if dist.active:
        shared = mr.global_rollout_metrics(rollouts, zero_var, report.timeouts, report.errors, dist)
    else:
        shared = rollout_metrics(rollouts, zero_var, report.timeouts, report.errors)
    check_reward_failures(  # on global counts, so every rank stops together
        rollout_batch,
        n_rollouts,
        int(shared["rollout/reward_timeouts"]),
        int(shared["rollout/reward_errors"]),
        cfg.task.max_failed_reward_frac,
    )
    signal = signal_metrics(rollouts, zero_var, cfg.group_size)
    if dist.active:  # every rank holds the same number of whole groups: the mean over ranks is the batch's
        signal = dist.reduce_metrics(signal, "mean")
        signal["rollout/zero_var_pred_batch_p"] = predicted_zero_var_frac(shared["rollout/solve_rate"], cfg.group_size)
    shared.update(signal)
    parts = {f"reward/{name}_mean": sum(v) / max(len(v), 1) for name, v in report.parts.items()}
    shared.update(dist.reduce_metrics(parts, "mean"))  # whole groups on every rank: the mean over ranks
    shared.update(resampled)
    shared.update(
        peer_metrics(rollouts, timers.since_log["rollout"], budget.tokens, time.time() - budget.t_start, dist)
    )
    fmt = format_counts(scorer.task, [r.text for r in rollouts], [r.reward for r in rollouts])
    if fmt is not None and dist.active:  # sums over ranks: the whole rollout batch's shares
        fmt = tuple(dist.all_reduce([float(x) for x in fmt]))  # type: ignore[assignment]
    shared.update(format_metrics(fmt, "rollout", "format_ok_frac"))
    keep = [r for r, z in zip(rollouts, zero_var.tolist()) if not (cfg.algo.drop_zero_var_groups and z)]
    minibatches = split_groups(keep, derived.updates_per_rollout_batch)
    batches = [collate(mb, engine.pad_id) if mb else None for mb in minibatches]
    with timers.phase("logprob"):
        # later mini-batches are off-policy (ratio vs the sampler): old log-probs when U > 1; the first one is
        # on-policy (weights have not moved yet, ratio == 1 exactly), so its pass is skipped when allowed
        batches = mr.attach_logprobs(
            learner,
            batches,
            derived.updates_per_rollout_batch > 1,
            cfg.algo.kl_coef > 0,
            dist,
            skip_first_old=cfg.learner.skip_onpolicy_logprob,
        )
    ref_metrics: dict[str, float] = {}
    if noise_reference.due(budget.steps, len(batches), cfg.diagnostics.grad_noise_ref_every) and batches[0]:
        if dist.active:
            raise ConfigError("diagnostics.grad_noise_ref_every runs in a single process for now; set it to 0")
        ref_metrics = noise_reference.take_reference(cfg, train_set, engine, scorer, learner, budget.steps)
    lines: list[dict[str, Any]] = []
    for u, mb in enumerate(batches):
        with timers.phase("learner"):
            step_metrics = mr.train_or_skip(learner, mb, dist)  # skipped when empty on every rank
        if u == 0:
            step_metrics.update(ref_metrics)
        budget.steps += 1
        if u == len(batches) - 1 and mr.engine_needs_push(engine, learner):
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
        line.update(mr.rank_extras(line, dist))  # time/* and memory/peak_gb: max over ranks
        t_step = time.perf_counter()
        tracker.log(line)
        view.update(line)
        lines.append(line)
        if guard is not None and mb is not None:
            guard.observe(budget.steps, step_metrics)  # raises after learner.max_consecutive_skips in a row
        if cfg.logger.dump_rollouts_every and budget.steps % cfg.logger.dump_rollouts_every == 0:
            tracker.dump_rollouts(budget.steps, mr.gather_for_dump(rollouts, dist), by_id)
        if cfg.budget.max_steps and budget.steps >= cfg.budget.max_steps:
            break
    if zero_signal is not None:  # on global metrics: every rank warns or stops together
        zero_signal.observe(rollout_batch, shared["rollout/zero_var_group_frac"], shared["rollout/reward_mean"])
    return lines


def difficulty_profile(cfg: TrainConfig, engine, scorer, train_set, run_dir: Path, tag: str, dist) -> dict[str, float]:
    """`eval.difficulty_prompts` training prompts x `eval.difficulty_samples` at the training temperature: writes
    difficulty_<tag>.json (+ .png), prints one line, returns `difficulty/frac_mixed` and `difficulty/mean_p`."""
    from two_grpo.data import difficulty

    if cfg.eval.difficulty_prompts <= 0 or cfg.eval.prompts <= 0:  # eval.prompts=0 turns every eval off
        return {}
    prompts = difficulty.pick_prompts(train_set, cfg.eval.difficulty_prompts)
    k, temp = cfg.eval.difficulty_samples, cfg.rollout.temperature
    prof = difficulty.measure(engine, scorer, prompts, k, temp, cfg.rollout.max_response_tokens, cfg.seed + 29)
    if dist.is_main:
        difficulty.write(run_dir, tag, prof)
        print(difficulty.summary_line(tag, prof), flush=True)
    return {"difficulty/frac_mixed": prof["frac_mixed"], "difficulty/mean_p": prof["mean_solve_rate"]}


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


def resume_command(run_dir: Path) -> str:
    """The exact command that resumes `run_dir` (its saved config is used; under torchrun / deepspeed, add
    `resume=RUN_DIR` to the launch command instead)."""
    import shlex

    return f"two-grpo train resume={shlex.quote(str(run_dir))}"


def final_weights(learner, dist) -> dict[str, torch.Tensor]:
    """The learner's full weights on rank 0 (CPU copies), {} elsewhere. Collective under ZeRO-3 (each
    parameter is gathered while it is copied)."""
    return {n: t.detach().to("cpu", copy=True) for n, t in learner.named_weights() if dist.is_main}


def prepare_resume(run_dir: Path, ckpts: CheckpointManager, dist):
    """Before anything is written: drop partial checkpoints, pick the latest complete one and cut the run's
    logs back to its step (the lines after it are produced again; rank 0 edits, every rank reads).
    Returns the Checkpoint or None."""
    from two_grpo.run.checkpoint import truncate_jsonl

    if not dist.is_main:
        dist.barrier()
        return ckpts.latest()
    removed = ckpts.clean_partial()
    if removed:
        print(f"two-grpo: removed incomplete checkpoint(s) left by an interrupted save: {', '.join(removed)}")
    latest = ckpts.latest()
    step = latest.step if latest is not None else 0
    truncate_jsonl(run_dir / "metrics.jsonl", step)
    truncate_jsonl(run_dir / "reward_failures.jsonl", step)
    truncate_jsonl(run_dir / "eval.jsonl", step)
    truncate_jsonl(run_dir / OUTCOMES_FILE, step)
    for dump in (run_dir / "rollouts").glob("step_*.jsonl"):
        if int(dump.stem.split("_")[1]) > step:
            dump.unlink()
    if latest is not None:
        print(f"two-grpo: resuming from {latest.path} (step {latest.step})")
    dist.barrier()
    return latest


def trainer_state(rollout_batch, sampler, budget, timers, guard, learner, history, eval_start) -> dict[str, Any]:
    """Everything of the trainer a checkpoint needs besides the learner's own state and the RNGs."""
    return {
        "rollout_batch": rollout_batch,
        "sampler": sampler.state_dict(),
        "budget": {"steps": budget.steps, "rollouts": budget.rollouts, "tokens": budget.tokens},
        "wallclock_s": time.time() - budget.t_start,
        "timers_total": dict(timers.total),
        "guard": guard.state_dict(),
        "skipped_updates": getattr(learner, "skipped_updates", 0),
        "history": history,
        "eval_start": eval_start,
    }


def restore_state(state, ckpt, learner, engine, sampler, budget, timers, guard, dist) -> None:
    learner.load_state(ckpt.learner_dir)  # collective under DeepSpeed
    if mr.engine_needs_push(engine, learner):
        engine.load_weights(learner.named_weights())
    sampler.load_state_dict(state["sampler"])
    budget.steps, budget.rollouts, budget.tokens = (state["budget"][k] for k in ("steps", "rollouts", "tokens"))
    budget.t_start = time.time() - state["wallclock_s"]
    timers.total.update(state["timers_total"])
    guard.load_state_dict(state["guard"])
    if hasattr(learner, "skipped_updates"):
        learner.skipped_updates = state["skipped_updates"]
    set_rng_state(ckpt.rng(dist.rank))


def save_checkpoint(
    ckpts: CheckpointManager, step: int, learner, state: dict[str, Any], saved_step: int, dist=None
) -> int:
    """Save; on a write failure (full disk...) say so in one line and keep going. Returns the last saved step."""
    t0 = time.perf_counter()
    try:
        ckpt = ckpts.save(step, learner, state, dist)
    except OSError as exc:
        previous = ckpts.latest()
        kept = f"the previous checkpoint {previous.path} is intact" if previous else "no earlier checkpoint exists"
        print(f"two-grpo: warning: checkpoint at step {step} not saved ({exc}); {kept}", file=sys.stderr, flush=True)
        return saved_step
    if dist is None or dist.is_main:
        print(f"two-grpo: checkpoint {ckpt.path} ({time.perf_counter() - t0:.2f}s)", flush=True)
    return step
