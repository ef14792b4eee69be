"""Advantage estimators: pure functions of rewards and explicit group ids.

Shapes: R rollouts; `rewards` [R] float, `group_ids` [R] int64 (any values; rollouts sharing an id form a
group). Grouping is by id, never by position, so the result is invariant to the order of rollouts.

Estimators (`advantage=`):
- `grpo`      (r - mean_g) / (std_g + eps). `std=population` divides by G (the paper's analysis: ±1 for
              G=2 with rewards {1,0}); `std=sample` divides by G-1 (verl/TRL code: ±0.7071). DeepSeekMath.
- `dr_grpo`   r - mean_g, no std (Dr. GRPO, arXiv 2503.20783): ±0.5 for G=2 with {1,0}.
- `batch_std` (r - mean_g) / (batch std + eps): keeps the relative magnitude between groups (the critique's
              variant). `batch_std_of` says whose std:
              `rewards`  the sample std of the raw rewards over the batch: TRL's `scale_rewards="batch"`
                         (`rewards.std()`, unbiased), which the critique ran; [1,0],[1,1] -> ±0.5/0.5 = ±0.9998
                         with TRL's eps 1e-4;
              `centered` the population std of the group-centred rewards r - mean_g (REINFORCE++-baseline
                         style; this project's definition before `batch_std_of`): [1,0],[1,1] -> ±0.5/0.3536
                         = ±1.414.
- `sign`      sign(r - mean_g): the paper's ±1/0 for G=2 ("It Takes Two", arXiv 2510.00977).
- `rloo`      r_i - mean_{j != i} r_j = G/(G-1) (r_i - mean_g) (RLOO, arXiv 2402.14740).

A group is zero-variance when all its rewards are equal; every estimator gives it advantage 0.
"""

from __future__ import annotations

import torch

ESTIMATORS = ("grpo", "dr_grpo", "batch_std", "sign", "rloo")
BATCH_STD_OF = ("rewards", "centered")


def group_stats(rewards: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-rollout group statistics.

    Returns:
        mean [R], population variance [R], group size [R] (float), zero_var [R] (bool).
    """
    _, inverse = torch.unique(group_ids, return_inverse=True)  # [R] -> dense group index
    n_groups = int(inverse.max().item()) + 1 if inverse.numel() else 0
    r = rewards.to(torch.float64)
    count = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, inverse, torch.ones_like(r))  # [n]
    total = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, inverse, r)  # [n]
    mean = (total / count)[inverse]  # [R]
    sq = torch.zeros(n_groups, dtype=torch.float64).index_add_(0, inverse, (r - mean) ** 2)  # [n]
    var_pop = (sq / count)[inverse]  # [R]
    rmax = torch.full((n_groups,), -torch.inf, dtype=torch.float64).scatter_reduce_(0, inverse, r, "amax")
    rmin = torch.full((n_groups,), torch.inf, dtype=torch.float64).scatter_reduce_(0, inverse, r, "amin")
    zero_var = (rmax == rmin)[inverse]  # [R]
    return mean, var_pop, count[inverse], zero_var


def compute_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    estimator: str = "grpo",
    std: str = "population",
    eps: float = 1e-6,
    batch_std_of: str = "centered",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages for each rollout.

    Args:
        rewards: [R] float rewards; must be finite.
        group_ids: [R] int group id of each rollout.
        estimator: one of ESTIMATORS.
        std: `population` or `sample` (grpo only).
        eps: added to the std in the denominator.
        batch_std_of: `rewards` (TRL scale_rewards="batch") or `centered` (batch_std only).

    Returns:
        adv [R] float32, zero_var [R] bool (rollout belongs to a group whose rewards are all equal).
    """
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards contain NaN or inf; refusing to compute advantages")
    mean, var_pop, count, zero_var = group_stats(rewards, group_ids)
    centered = rewards.to(torch.float64) - mean  # [R]
    if estimator == "grpo":
        if std == "population":
            var = var_pop
        elif std == "sample":
            var = var_pop * count / (count - 1).clamp(min=1)
        else:
            raise ValueError(f"unknown std {std!r}; use population or sample")
        adv = centered / (var.sqrt() + eps)
    elif estimator == "dr_grpo":
        adv = centered
    elif estimator == "batch_std":
        if batch_std_of == "rewards":
            std_b = rewards.to(torch.float64).std(unbiased=True) if rewards.numel() > 1 else torch.zeros(())
        elif batch_std_of == "centered":
            std_b = centered.std(unbiased=False)
        else:
            raise ValueError(f"unknown batch_std_of {batch_std_of!r}; use rewards or centered")
        adv = centered / (std_b + eps)
    elif estimator == "sign":
        adv = torch.sign(centered)
    elif estimator == "rloo":
        adv = centered * count / (count - 1).clamp(min=1)
    else:
        raise ValueError(f"unknown advantage estimator {estimator!r}; use one of {ESTIMATORS}")
    adv = torch.where(zero_var, torch.zeros_like(adv), adv)
    return adv.to(torch.float32), zero_var
