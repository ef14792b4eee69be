"""The training loop, top to bottom: one function per phase, timers and budget counters; no formulas here.

`train` builds the run's parts once (model, task, data gate, rollout engine, learner, tracker) into a `Loop`
(run/state.py), restores it from the latest checkpoint or runs the start eval, then calls `rollout_step` until
the budget is spent, checkpointing with `save_checkpoint(..., loop.state_dict(), ...)`, and closes with the end
eval, the final weights and the summary.

Per rollout batch (`rollout_step`): sample P prompts -> generate G rollouts each -> score (re-draw zero-variance
groups when asked) -> advantages -> batch metrics -> collate -> (old log-probs when U > 1) -> U = P/M optimizer
steps, one per mini-batch of M prompts -> weight sync. One metrics.jsonl line per optimizer step. Phase times
on a line are the seconds spent since the previous line, so summing a column gives the run's total per phase.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from two_grpo.config.schema import ConfigError, TrainConfig, derive
from two_grpo.data import difficulty
from two_grpo.data.batch import collate, split_groups
from two_grpo.data.gate import gate_train_set
from two_grpo.data.resample import resample_zero_var
from two_grpo.data.sampler import PromptSampler
from two_grpo.dist import multirank as mr
from two_grpo.dist.context import init_dist
from two_grpo.learner import make_learner
from two_grpo.models.final_model import final_weights, save_final
from two_grpo.models.loading import (
    check_positions,
    fit_prompt_tokens,
    load_model,
    load_tokenizer,
    read_model_config,
    resolve_model_path,
)
from two_grpo.models.lora import apply_lora, is_lora, trainable_summary
from two_grpo.rollout import auto_backend, engine_report, make_engine
from two_grpo.rollout.base import train_sampling
from two_grpo.run import engine_log, noise_reference
from two_grpo.run.checkpoint import CheckpointManager, save_checkpoint
from two_grpo.run.console import ProgressView, print_engine, print_header, print_summary
from two_grpo.run.guards import NonFiniteGuard, Preempted, PreemptionFlag, ZeroSignalGuard
from two_grpo.run.memory_plan import plan_lines
from two_grpo.run.metrics import batch_metrics, make_summary
from two_grpo.run.resume import prepare_resume, restore, resume_command
from two_grpo.run.state import Budget, Loop, sampling_seed, seed_everything
from two_grpo.run.tracking import Tracker
from two_grpo.study.evaluate import OUTCOMES_FILE, Evaluator, load_benchmarks
from two_grpo.tasks import check_data_files, make_task
from two_grpo.tasks.rewards import RewardScorer, plugin_parts


def train(cfg: TrainConfig, run_dir: Path) -> dict[str, Any]:
    """Run one training job into `run_dir`; returns the closing summary."""
    dist = init_dist()  # world_size 1 without a launcher (torchrun / deepspeed)
    mr.check_topology(cfg, dist)
    if cfg.learner.threads > 0:
        torch.set_num_threads(cfg.learner.threads)
    seed_everything(cfg.seed)
    check_data_files(cfg.task, cfg.eval.benchmarks)  # a missing data file fails now, not after a model build
    model_path = resolve_model_path(cfg.model, task=cfg.task)  # checks the folder; builds builtin:tiny if needed
    memory_lines = plan_lines(cfg, model_path)  # refuses (ConfigError) a plan over the GPU, before any load
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
        print("\n".join(memory_lines), flush=True)

    routed = engine_log.route_engine_logs(run_dir, cfg.logger.verbose)  # every rank, before vllm is imported
    if dist.is_main and routed and auto_backend(cfg) == "vllm":
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
    tracker = Tracker.for_run(run_dir, cfg) if dist.is_main else mr.NullTracker()
    budget = Budget(cfg)
    evaluator = Evaluator(cfg, suite, tracker, scorer, dist, run_dir / OUTCOMES_FILE if dist.is_main else None)
    view = (
        ProgressView(derived.total_steps, cfg.logger.progress, cfg.logger.print_every)
        if dist.is_main
        else mr.NullView()
    )
    loop = Loop(
        derived, train_set, engine, scorer, learner, tracker, view, sampler, budget,
        guard=NonFiniteGuard(cfg.learner.max_consecutive_skips),
        zero_signal=ZeroSignalGuard(cfg.guards.zero_signal_warn_batches, cfg.guards.zero_signal_stop_batches),
    )  # fmt: skip
    summary: dict[str, Any] = {}
    preempt = PreemptionFlag().install()
    try:
        if resume_from is not None:
            restore(loop, resume_from, dist)
        else:
            with loop.timers.phase("eval"):
                loop.eval_start = evaluator.run(engine, budget, loop.timers)
                loop.eval_start.update(difficulty.profile_run(cfg, engine, scorer, train_set, run_dir, "start", dist))
        saved_step = resume_from.step if resume_from is not None else -1
        preempted = False
        while not mr.stop_everywhere(budget.exhausted(sampler.epochs_done), dist):
            steps_before, rollouts_before = budget.steps, budget.rollouts
            loop.history += rollout_step(loop, cfg)
            loop.rollout_batch += 1
            due = evaluator.due(steps_before, budget.steps, rollouts_before, budget.rollouts)
            if due and loop.history and not budget.exhausted(sampler.epochs_done):
                with loop.timers.phase("eval"):
                    loop.history[-1].update(evaluator.run(engine, budget, loop.timers))
            preempted = mr.stop_everywhere(preempt.requested, dist)  # every rank saves and stops together
            if ckpts.due(steps_before, budget.steps) or preempted:
                saved_step = save_checkpoint(ckpts, budget.steps, learner, loop.state_dict(), saved_step, dist)
            if preempted:
                break
        if saved_step != budget.steps:
            saved_step = save_checkpoint(ckpts, budget.steps, learner, loop.state_dict(), saved_step, dist)
        if preempted:
            raise Preempted(
                f"preempted by {preempt.signal_name} at step {budget.steps}; checkpoint "
                f"{run_dir / 'checkpoints' / f'step_{saved_step}'}; to resume: {resume_command(run_dir)}"
            )
        with loop.timers.phase("eval"):
            eval_end = evaluator.run(engine, budget, loop.timers)
            if cfg.eval.difficulty_at_end:
                eval_end.update(difficulty.profile_run(cfg, engine, scorer, train_set, run_dir, "end", dist))
        save_final(final_weights(learner, dist), model, tokenizer, model_path, run_dir, dist.is_main)
        summary = make_summary(loop, eval_end)
        summary.update(mr.memory_summary(dist))
        summary.update(engine_info)
        tracker.write_json("summary.json", summary)
    finally:
        preempt.restore()
        loop.view.close()
        evaluator.close()
        tracker.close()
        scorer.close()
    if dist.is_main:
        print_summary(summary)
    return summary


def rollout_step(loop: Loop, cfg: TrainConfig) -> list[dict[str, Any]]:
    """One rollout batch and its U optimizer steps; advances `loop` and returns the metrics lines it logged."""
    t_step = time.perf_counter()
    dist = init_dist()
    budget, timers, engine, learner = loop.budget, loop.timers, loop.engine, loop.learner
    # 1. prompts and rollouts: this rank's share of the P prompts, G rollouts each
    prompts = [loop.train_set[i] for i in loop.sampler.next_batch()]
    by_id = {p.prompt_id: p for p in prompts}
    sampling = train_sampling(cfg, mr.rank_sampling_seed(sampling_seed(cfg.seed, loop.rollout_batch), dist))
    group_ids = [loop.rollout_batch * cfg.prompts_per_rollout + i for i in range(len(prompts))]
    my_prompts, my_group_ids = mr.shard_prompts(prompts, group_ids, cfg.prompts_per_minibatch, dist)
    with timers.phase("rollout"):
        rollouts = engine.generate(my_prompts, my_group_ids, sampling)
    # 2. rewards, and zero-variance groups re-drawn when asked (every extra draw is budgeted and timed)
    with timers.phase("reward"):
        report = loop.scorer.score(rollouts, by_id)
        for r, reward in zip(rollouts, report.rewards):
            r.reward = reward
    generated, resampled = rollouts, {}
    if cfg.algo.resample_zero_var:
        if dist.active:
            raise ConfigError("algo.resample_zero_var=true runs in a single process for now; drop it or the launcher")
        cap = cfg.algo.resample_max_rollouts or len(rollouts)
        rollouts, drawn, resampled = resample_zero_var(rollouts, loop, by_id, sampling, report, cap)
        generated = generated + drawn
    # 3. advantages over the whole rollout batch (every rank)
    with timers.phase("reward"):
        rewards = torch.tensor([r.reward for r in rollouts], dtype=torch.float32)  # [R]
        adv, zero_var = mr.global_advantages(rewards, torch.tensor([r.group_id for r in rollouts]), cfg, dist)
        for r, a in zip(rollouts, adv.tolist()):
            r.advantage = a
    if report.first_failures:
        loop.tracker.dump_failures(budget.steps + 1, report.first_failures)
    # 4. budget and the metrics this batch's lines share
    n_rollouts, n_tokens = mr.global_counts(generated, dist)
    budget.rollouts += n_rollouts
    budget.tokens += n_tokens
    shared = batch_metrics(cfg, loop, rollouts, zero_var, report, n_rollouts, resampled, dist)
    # 5. mini-batches of whole groups, old (and reference) log-probs
    keep = [r for r, z in zip(rollouts, zero_var.tolist()) if not (cfg.algo.drop_zero_var_groups and z)]
    minibatches = split_groups(keep, loop.derived.updates_per_rollout_batch)
    batches = [collate(mb, engine.pad_id) if mb else None for mb in minibatches]
    with timers.phase("logprob"):
        # later mini-batches are off-policy (ratio vs the sampler): old log-probs when U > 1; the first one is
        # on-policy (weights have not moved yet, ratio == 1 exactly), so its pass is skipped when allowed
        batches = mr.attach_logprobs(
            learner,
            batches,
            loop.derived.updates_per_rollout_batch > 1,
            cfg.algo.kl_coef > 0,
            dist,
            skip_first_old=cfg.learner.skip_onpolicy_logprob,
        )
    ref_metrics: dict[str, float] = {}
    if noise_reference.due(budget.steps, len(batches), cfg.diagnostics.grad_noise_ref_every) and batches[0]:
        if dist.active:
            raise ConfigError("diagnostics.grad_noise_ref_every runs in a single process for now; set it to 0")
        ref_metrics = noise_reference.take_reference(cfg, loop.train_set, engine, loop.scorer, learner, budget.steps)
    # 6. U optimizer steps, the weight push after the last, one metrics line each
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
            "rollout_batch": loop.rollout_batch,
            "epoch": loop.sampler.epochs_done,
            **shared,
            **step_metrics,
            **timers.pop(),
            **budget.as_metrics(),
        }
        line["time/step"] = time.perf_counter() - t_step
        line.update(mr.rank_extras(line, dist))  # time/* and memory/peak_gb: max over ranks
        t_step = time.perf_counter()
        loop.tracker.log(line)
        loop.view.update(line)
        lines.append(line)
        if mb is not None:
            loop.guard.observe(budget.steps, step_metrics)  # raises after learner.max_consecutive_skips in a row
        if cfg.logger.dump_rollouts_every and budget.steps % cfg.logger.dump_rollouts_every == 0:
            loop.tracker.dump_rollouts(budget.steps, mr.gather_for_dump(rollouts, dist), by_id)
        if cfg.budget.max_steps and budget.steps >= cfg.budget.max_steps:
            break
    # on global metrics: every rank warns or stops together
    loop.zero_signal.observe(loop.rollout_batch, shared["rollout/zero_var_group_frac"], shared["rollout/reward_mean"])
    return lines
