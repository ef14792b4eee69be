"""Signal accounting for one rollout batch: how many rollouts carried no gradient, the zero-variance group
fraction that a single batch-wide solve rate p would predict (p^G + (1-p)^G), and the advantage scale.

Observed above predicted means prompts differ in difficulty (the prediction assumes every prompt has the same
p; p^G + (1-p)^G is convex in p, so spread in p raises the true fraction). The per-prompt prediction, from each
held-out prompt's own solve rate, is `eval/<bench>/zero_var_pred_g<G>` (evaluate.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

ZERO_ADV = 1e-12


def predicted_zero_var_frac(p: float, group_size: int) -> float:
    """P(all G binary rewards equal) for one prompt with solve rate p: p^G + (1-p)^G."""
    return p**group_size + (1.0 - p) ** group_size


def signal_metrics(rollouts: Sequence[Any], zero_var: Any, group_size: int) -> dict[str, float]:
    """`rollout/zero_adv_frac`, `rollout/zero_var_pred_batch_p`, `adv/abs_mean_nonzero` for a rollout batch."""
    n = max(len(rollouts), 1)
    advs = [abs(r.advantage) for r in rollouts]
    nonzero = [a for a in advs if a > ZERO_ADV]
    solve = sum(r.reward == 1.0 for r in rollouts) / n
    return {
        "rollout/zero_adv_frac": (len(advs) - len(nonzero)) / n,
        "rollout/zero_var_pred_batch_p": predicted_zero_var_frac(solve, group_size),
        "adv/abs_mean_nonzero": sum(nonzero) / len(nonzero) if nonzero else 0.0,
    }
