"""What the training loop does differently on several ranks: slicing, global statistics, rank-0 output.

- Every rank samples the same P prompts (same seed), then keeps its slice: mini-batch u holds prompts
  [u*M, (u+1)*M) as on one rank, and rank r takes the r-th of its W equal parts, so a group is never split and
  the union over ranks of each local mini-batch is exactly the one-rank mini-batch.
- Each rank generates and scores its slice with its own engine (own sampling seed).
- Advantages are computed on the gathered rewards of the whole rollout batch (exact, so `batch_std` uses
  global statistics); rollout metrics and budget counters are global sums; times and memory are the max
  over ranks.
- Only rank 0 writes (NullTracker / NullView elsewhere); rollout dumps gather the whole batch on rank 0.
With one rank every function here is the identity of the single-process path.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from two_grpo.algo.advantages import compute_advantages
from two_grpo.data.batch import Prompt, Rollout, TrainBatch
from two_grpo.config.schema import ConfigError, TrainConfig
from two_grpo.dist.context import DistContext, peak_memory_gb


def check_topology(cfg: TrainConfig, dist: DistContext) -> None:
    """Raise ConfigError when the config cannot run on `dist.world_size` ranks."""
    tp = cfg.rollout.tensor_parallel_size
    if tp > 1 and dist.world_size % tp:
        raise ConfigError(
            f"rollout.tensor_parallel_size={tp} needs a multiple of {tp} launched ranks (got {dist.world_size}); "
            f"launch with torchrun --nproc_per_node {tp} (one rank per shard) or set it to 1"
        )
    if not dist.active:
        return
    if cfg.learner.backend != "deepspeed":
        raise ConfigError(
            f"learner.backend={cfg.learner.backend} runs on one process only, but {dist.world_size} ranks were "
            "launched; use learner=zero2 or learner=zero3 (or launch one process)"
        )
    if cfg.prompts_per_minibatch % dist.world_size:
        raise ConfigError(
            f"prompts_per_minibatch={cfg.prompts_per_minibatch} must be divisible by the number of ranks "
            f"({dist.world_size}) so every rank gets whole groups; set it to a multiple of {dist.world_size}"
        )


def shard_prompts(
    prompts: list[Prompt], group_ids: list[int], prompts_per_minibatch: int, dist: DistContext
) -> tuple[list[Prompt], list[int]]:
    """This rank's prompts (and their group ids): its 1/W part of every mini-batch of M prompts."""
    if not dist.active:
        return prompts, group_ids
    part = prompts_per_minibatch // dist.world_size
    idx = [
        i
        for start in range(0, len(prompts), prompts_per_minibatch)
        for i in range(start + dist.rank * part, start + (dist.rank + 1) * part)
        if i < len(prompts)
    ]
    return [prompts[i] for i in idx], [group_ids[i] for i in idx]


def rank_sampling_seed(seed: int, dist: DistContext) -> int:
    """Each rank samples its slice with its own seed (rank 0 keeps the single-process seed)."""
    return (seed + 7919 * dist.rank) % (2**31 - 1)


def global_advantages(
    rewards: torch.Tensor, group_ids: torch.Tensor, cfg: TrainConfig, dist: DistContext
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages [R_local] and zero-variance flags [R_local] computed over the whole rollout batch."""
    a = cfg.algo
    if not dist.active:
        return compute_advantages(rewards, group_ids, a.advantage, a.adv_std, a.adv_eps, a.batch_std_of)
    parts = dist.all_gather_object((rewards.tolist(), group_ids.tolist()))
    all_rewards = torch.tensor([x for r, _ in parts for x in r], dtype=torch.float32)  # [R_global]
    all_groups = torch.tensor([x for _, g in parts for x in g], dtype=torch.long)  # [R_global]
    adv, zero_var = compute_advantages(all_rewards, all_groups, a.advantage, a.adv_std, a.adv_eps, a.batch_std_of)
    start = sum(len(r) for r, _ in parts[: dist.rank])
    return adv[start : start + len(rewards)], zero_var[start : start + len(rewards)]


def global_rollout_metrics(
    rollouts: list[Rollout], zero_var: torch.Tensor, n_timeouts: int, n_errors: int, dist: DistContext
) -> dict[str, float]:
    """The trainer's `rollout_metrics` over the whole rollout batch (sums all-reduced; groups are never split)."""
    groups = {r.group_id for r in rollouts}
    zero_groups = {r.group_id for r, z in zip(rollouts, zero_var.tolist()) if z}
    advs = [r.advantage for r in rollouts]
    local = [
        len(rollouts),
        sum(r.reward for r in rollouts),
        sum(r.reward == 1.0 for r in rollouts),
        sum(len(r.token_ids) for r in rollouts),
        sum(r.finish_reason == "length" for r in rollouts),
        len(groups),
        len(zero_groups),
        n_timeouts,
        n_errors,
        sum(abs(x) for x in advs),
        sum(advs),
        sum(x * x for x in advs),
    ]
    n, rew, solved, tok, trunc, n_groups, n_zero, tmo, err, abs_sum, adv_sum, adv_sq = dist.all_reduce(local)
    n1 = max(n, 1.0)
    var = max(adv_sq / n1 - (adv_sum / n1) ** 2, 0.0)
    return {
        "rollout/reward_mean": rew / n1,
        "rollout/solve_rate": solved / n1,
        "rollout/response_tokens_mean": tok / n1,
        "rollout/truncated_frac": trunc / n1,
        "rollout/zero_var_group_frac": n_zero / max(n_groups, 1.0),
        "rollout/reward_timeouts": tmo,
        "rollout/reward_errors": err,
        "adv/abs_mean": abs_sum / n1 if n else 0.0,
        "adv/std": var**0.5 if n else 0.0,
    }


def global_counts(rollouts: list[Rollout], dist: DistContext) -> tuple[int, int]:
    """(rollouts, generated tokens) of the whole rollout batch."""
    n, tok = dist.all_reduce([len(rollouts), sum(len(r.token_ids) for r in rollouts)])
    return int(n), int(tok)


def gather_for_dump(rollouts: list[Rollout], dist: DistContext) -> list[Rollout]:
    """All ranks' rollouts on rank 0 (prompt tokens dropped), [] elsewhere. Collective."""
    if not dist.active:
        return rollouts
    light = [replace(r, prompt_token_ids=[], sample_logprobs=None) for r in rollouts]
    parts = dist.all_gather_object(light)
    return [r for part in parts for r in part] if dist.is_main else []


def attach_logprobs(
    learner: Any,
    batches: list[TrainBatch | None],
    old: bool,
    ref: bool,
    dist: DistContext,
    skip_first_old: bool = False,
):
    """Add old/ref log-probs to each local mini-batch (old ones not to the first when `skip_first_old`: it is
    on-policy). With several ranks the learner is called for every mini-batch, empty ones included, so that
    its collectives (ZeRO-3 forwards) line up across ranks."""
    out = []
    for u, b in enumerate(batches):
        if b is None and not dist.active:
            out.append(None)
            continue
        old_logp = learner.logprobs(b) if old and not (u == 0 and skip_first_old) else None
        ref_logp = learner.ref_logprobs(b) if ref else None
        out.append(b.with_logprobs(old_logp=old_logp, ref_logp=ref_logp) if b is not None else None)
    return out


def train_or_skip(learner: Any, mb: TrainBatch | None, dist: DistContext) -> dict[str, float]:
    """One optimizer step, or a skipped one when the mini-batch is empty on every rank (decided globally)."""
    present = float(mb is not None and len(mb) > 0)
    if dist.all_reduce([present], "max")[0] == 0:
        return {"optim/skipped": 1.0}
    return learner.train_minibatch(mb)


def engine_needs_push(engine: Any, learner: Any) -> bool:
    """Weights go to the engine unless it samples from the very module the learner updates."""
    return not engine.shares_learner_weights() or bool(getattr(learner, "owns_weights_copy", False))


def stop_everywhere(stop: bool, dist: DistContext) -> bool:
    """Stop when any rank's budget says so (wall-clock limits differ by milliseconds across ranks)."""
    return bool(dist.all_reduce([float(stop)], "max")[0]) if dist.active else stop


def rank_extras(line: dict[str, Any], dist: DistContext) -> dict[str, float]:
    """Per-step values that differ by rank, reduced: `time/*` and `memory/peak_gb` are the max over ranks."""
    keys = sorted(k for k in line if k.startswith("time/"))
    values = dist.all_reduce([float(line[k]) for k in keys] + [peak_memory_gb()], "max")
    out = dict(zip(keys, values[:-1]))
    out["memory/peak_gb"] = values[-1]
    out["dist/world_size"] = float(dist.world_size)
    return out


def sharded_eval(run_one, eval_set: list[Prompt], dist: DistContext) -> dict[str, float]:
    """Each rank evaluates a contiguous slice; the prompt-weighted mean of every metric (exact for Mean@k,
    Pass@k, which are means over prompts). `run_one` runs on every rank, an empty slice included: the engine's
    `generate` may be collective (a TP group gathers its members' requests), so no rank may skip it."""
    if not dist.active:
        return run_one(eval_set)
    per = -(-len(eval_set) // dist.world_size)
    mine = eval_set[dist.rank * per : (dist.rank + 1) * per]
    parts = dist.all_gather_object((run_one(mine), len(mine)))
    total = sum(n for _, n in parts)
    keys = next((list(m) for m, n in parts if n), [])
    return {k: sum(m[k] * n for m, n in parts if n) / total for k in keys} if total else {}


def memory_summary(dist: DistContext) -> dict[str, Any]:
    """Peak memory of the run: the max over ranks, and each rank's own peak. Collective."""
    per_rank = [round(x, 4) for x in dist.all_gather_object(peak_memory_gb())]
    return {"memory/peak_gb": max(per_rank), "memory/peak_gb_per_rank": per_rank}


class NullTracker:
    """What ranks other than 0 get instead of a Tracker: the same methods, writing nothing."""

    def log(self, metrics: dict[str, Any]) -> None: ...

    def dump_rollouts(self, step: int, rollouts: list[Rollout], prompts: dict[int, Prompt]) -> None: ...

    def dump_failures(self, step: int, failures: list[dict[str, str]]) -> None: ...

    def log_eval(self, metrics: dict[str, Any]) -> None: ...

    def write_json(self, name: str, payload: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


class NullView:
    """Progress view of ranks other than 0: prints nothing."""

    def update(self, m: dict[str, Any]) -> None: ...

    def close(self) -> None: ...
