"""Held-out evaluation: k samples per prompt with the eval sampling settings; Mean@k and unbiased Pass@k."""

from __future__ import annotations

from math import comb

from two_grpo.batch import Prompt
from two_grpo.config import EvalConfig
from two_grpo.rewards import RewardScorer
from two_grpo.rollout.base import RolloutEngine, Sampling


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased Pass@k from n samples with c correct (Chen et al. 2021): 1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ValueError(f"pass@k needs k <= n (k={k}, n={n})")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def evaluate(
    engine: RolloutEngine, scorer: RewardScorer, prompts: list[Prompt], cfg: EvalConfig, max_new_tokens: int, seed: int
) -> dict[str, float]:
    """`eval/<task>/mean@k` (mean reward) and `eval/<task>/pass@k` (reward 1.0 counts as solved)."""
    if not prompts:
        return {}
    k = cfg.samples_per_prompt
    sampling = Sampling(
        n=k, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k, max_new_tokens=max_new_tokens, seed=seed
    )
    rollouts = engine.generate(prompts, list(range(len(prompts))), sampling)
    report = scorer.score(rollouts, {p.prompt_id: p for p in prompts})
    per_prompt: dict[int, list[float]] = {}
    for r, reward in zip(rollouts, report.rewards):
        per_prompt.setdefault(r.group_id, []).append(reward)
    mean = sum(report.rewards) / len(report.rewards)
    passk = sum(pass_at_k(len(v), sum(x == 1.0 for x in v), k) for v in per_prompt.values()) / len(per_prompt)
    name = scorer.task.name
    return {f"eval/{name}/mean@{k}": mean, f"eval/{name}/pass@{k}": passk}
