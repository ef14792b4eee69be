"""The numbers the loop logs: the metrics a rollout batch's lines share, and the run's closing summary.

Counting only: formulas of the learning signal live in algo/ (signal.py), rank reductions in dist/multirank.py.
"""

from __future__ import annotations

import time
from typing import Any

import torch

from two_grpo.algo.signal import predicted_zero_var_frac, signal_metrics
from two_grpo.config.schema import TrainConfig
from two_grpo.data.batch import Rollout
from two_grpo.data.format_split import format_counts, format_metrics
from two_grpo.dist import multirank as mr
from two_grpo.run.guards import check_reward_failures
from two_grpo.run.state import Loop
from two_grpo.run.tracking import PHASES, peer_metrics


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


def batch_metrics(
    cfg: TrainConfig,
    loop: Loop,
    rollouts: list[Rollout],
    zero_var: torch.Tensor,
    report: Any,
    n_rollouts: int,
    resampled: dict[str, float],
    dist: Any,
) -> dict[str, float]:
    """The metrics every line of this rollout batch shares, global over ranks: rollout/*, adv/*, the signal,
    reward parts, resampling, peer names and format shares. `report`: the scorer's (timeouts, errors, parts);
    `n_rollouts`: rollouts generated over all ranks. Stops the run when too many rewards failed."""
    if dist.active:
        shared = mr.global_rollout_metrics(rollouts, zero_var, report.timeouts, report.errors, dist)
    else:
        shared = rollout_metrics(rollouts, zero_var, report.timeouts, report.errors)
    check_reward_failures(  # on global counts, so every rank stops together
        loop.rollout_batch,
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
    budget = loop.budget
    shared.update(
        peer_metrics(rollouts, loop.timers.since_log["rollout"], budget.tokens, time.time() - budget.t_start, dist)
    )
    fmt = format_counts(loop.scorer.task, [r.text for r in rollouts], [r.reward for r in rollouts])
    if fmt is not None and dist.active:  # sums over ranks: the whole rollout batch's shares
        fmt = tuple(dist.all_reduce([float(x) for x in fmt]))  # type: ignore[assignment]
    shared.update(format_metrics(fmt, "rollout", "format_ok_frac"))
    return shared


def make_summary(loop: Loop, eval_end: dict[str, float]) -> dict[str, Any]:
    """Solve rate at start and end (first 10% vs last 20% of steps, and held-out eval), budget, time per phase."""
    history, budget = loop.history, loop.budget
    n = len(history)
    first = history[: max(1, n // 10)]
    last = history[n - max(1, n // 5) :]

    def mean(rows: list[dict[str, Any]], key: str) -> float:
        return sum(r[key] for r in rows) / max(len(rows), 1)

    out: dict[str, Any] = {
        "optimizer_steps": budget.steps,
        "rollouts": budget.rollouts,
        "tokens_generated": budget.tokens,
        "epochs": round(loop.sampler.epochs_done, 4),
        "solve_rate_first10pct": mean(first, "rollout/solve_rate"),
        "solve_rate_last20pct": mean(last, "rollout/solve_rate"),
        "skipped_updates": getattr(loop.learner, "skipped_updates", 0),
        "wallclock_s": time.time() - budget.t_start,
    }
    out.update({f"{k} (start)": v for k, v in loop.eval_start.items()})
    out.update({f"{k} (end)": v for k, v in eval_end.items()})
    out.update({f"time/{p}_total_s": loop.timers.total.get(p, 0.0) for p in PHASES})
    return out
