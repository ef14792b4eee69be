"""`diagnostics.grad_noise_ref_every=N`: every N optimizer steps, a reference gradient from a larger batch.

At the first optimizer step of a rollout batch whose steps, counted before it (steps_before, steps_before + 1,
..., steps_before + U - 1), include a multiple of N (with U = 1: steps 1, N + 1, 2N + 1, ...), `grad_noise_ref_prompts` training prompts (0 = 4 x
prompts_per_minibatch), drawn by their own seeded RNG, are sampled G times each at the current weights, scored,
given the run's advantages, and their loss gradient is sketched as the step's own gradient is
(learner/grad_noise_probe.py). The step then logs `grad_noise/ref_cos`: the cosine between its mini-batch
gradient and that reference (1 = the mini-batch points where a large batch does).

Cost and honesty: the reference rollouts are a measurement, not training. They are not in the `budget/*`
counters (as eval rollouts are not) but logged as `grad_noise/ref_rollouts`, and their seconds as
`grad_noise/ref_s`; those seconds are part of the run's wall-clock. The engine samples under a per-call
seed and the prompts come from a private RNG, so the training trajectory is unchanged (tested).
"""

from __future__ import annotations

import random
import time
from typing import Any

import torch

from two_grpo.data.batch import Prompt, collate

REF_SEED_SALT = 0x5EED_0F_2EF  # keeps the reference's prompts and sampling seeds apart from training's


def due(steps_before: int, updates: int, every: int) -> bool:
    """Whether the rollout batch after `steps_before` optimizer steps, with `updates` of its own, takes one."""
    return every > 0 and (-steps_before) % every < max(updates, 1)


def reference_prompts(train_set: list[Prompt], n: int, run_seed: int, steps_before: int) -> list[Prompt]:
    """`n` distinct training prompts (all of them when fewer), from an RNG of their own."""
    rng = random.Random(run_seed * 1_000_003 + steps_before * 7919 + REF_SEED_SALT)
    return rng.sample(train_set, min(n, len(train_set)))


def take_reference(cfg: Any, train_set: list[Prompt], engine: Any, scorer: Any, learner: Any, steps_before: int):
    """Sample, score and sketch the reference batch into the learner's probe; returns its metrics."""
    from two_grpo.algo.advantages import compute_advantages
    from two_grpo.rollout.base import train_sampling

    t0 = time.perf_counter()
    d, a = cfg.diagnostics, cfg.algo
    n = d.grad_noise_ref_prompts or 4 * cfg.prompts_per_minibatch
    prompts = reference_prompts(train_set, n, cfg.seed, steps_before)
    group_ids = [-(i + 1) for i in range(len(prompts))]  # never a training group id
    seed = (cfg.seed * 1_000_003 + steps_before * 7919 + REF_SEED_SALT) % (2**31 - 1)
    rollouts = engine.generate(prompts, group_ids, train_sampling(cfg, seed))
    report = scorer.score(rollouts, {p.prompt_id: p for p in prompts})
    rewards = torch.tensor(report.rewards, dtype=torch.float32)  # [R]
    adv, _ = compute_advantages(
        rewards, torch.tensor([r.group_id for r in rollouts]), a.advantage, a.adv_std, a.adv_eps, a.batch_std_of
    )
    for r, reward, v in zip(rollouts, report.rewards, adv.tolist()):
        r.reward, r.advantage = reward, v
    batch = collate(rollouts, engine.pad_id)
    if a.kl_coef > 0:
        batch = batch.with_logprobs(old_logp=None, ref_logp=learner.ref_logprobs(batch))
    learner.noise_reference(batch)  # on-policy: the weights have not moved since sampling
    return {"grad_noise/ref_rollouts": float(len(rollouts)), "grad_noise/ref_s": time.perf_counter() - t0}
