"""2-GRPO+RS / DAPO dynamic sampling on an honest budget (`algo.resample_zero_var=true`).

After a rollout batch is scored, every zero-variance group (all G rewards equal: no gradient) is replaced by a
group drawn from a fresh prompt, until no zero-variance group is left or `algo.resample_max_rollouts` extra
rollouts were generated ("It Takes Two" v3 §4.3; DAPO's dynamic sampling, arXiv 2503.14476). The batch keeps
its P groups, so the mini-batch split is unchanged. Every rollout drawn, kept or not, is counted by the caller
in `budget/*`, and its seconds in `time/rollout` / `time/reward`, so equal-budget comparisons stay honest.
Groups drawn that turn out zero-variance too are discarded (they still count).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from two_grpo.data.batch import Rollout

RESAMPLED_GROUP_BASE = 10**9  # group ids of re-drawn groups: 1e9 + rollout_batch * 1e5 + j (unique per batch)


@dataclass
class Resampled:
    kept: list[Rollout]  # the batch after replacement: P groups, original order, replacements in place
    drawn: list[Rollout] = field(default_factory=list)  # every extra rollout generated (kept or discarded)
    zero_var_groups_before: int = 0
    replaced_groups: int = 0


def zero_var_groups(rollouts: list[Rollout]) -> list[int]:
    """Group ids, in order of first appearance, whose rewards are all equal."""
    by_group: dict[int, set[float]] = {}
    for r in rollouts:
        by_group.setdefault(r.group_id, set()).add(r.reward)
    return [g for g, values in by_group.items() if len(values) == 1]


def fill_signal_groups(
    rollouts: list[Rollout], draw: Callable[[int], list[Rollout]], group_size: int, max_extra_rollouts: int
) -> Resampled:
    """Replace zero-variance groups of `rollouts` (rewards set) with signal groups from `draw(n_prompts)`, which
    generates and scores `n_prompts` fresh prompts (G rollouts each, rewards set, fresh group ids)."""
    dead = zero_var_groups(rollouts)
    out = Resampled(kept=list(rollouts), zero_var_groups_before=len(dead))
    replacements: list[list[Rollout]] = []
    while len(replacements) < len(dead):
        room = (max_extra_rollouts - len(out.drawn)) // group_size
        want = min(len(dead) - len(replacements), room)
        if want <= 0:
            break
        fresh = draw(want)
        if not fresh:
            break
        out.drawn += fresh
        alive = set(zero_var_groups(fresh))
        groups: dict[int, list[Rollout]] = {}
        for r in fresh:
            groups.setdefault(r.group_id, []).append(r)
        replacements += [g for gid, g in groups.items() if gid not in alive]
    replacements = replacements[: len(dead)]
    swap = dict(zip(dead, replacements))
    out.replaced_groups = len(swap)
    kept: list[Rollout] = []
    placed: set[int] = set()
    for r in rollouts:
        if r.group_id in swap:
            if r.group_id not in placed:
                kept += swap[r.group_id]
                placed.add(r.group_id)
        else:
            kept.append(r)
    out.kept = kept
    return out


def resample_zero_var(
    rollouts: list[Rollout], loop, by_id: dict, sampling, report, max_extra_rollouts: int
) -> tuple[list[Rollout], list[Rollout], dict[str, float]]:
    """Run `fill_signal_groups` with fresh prompts from the run's own sampler (timed as rollout / reward, the
    scorer's failures added to `report`). `loop`: the run's Loop (run/state.py): its rollout-batch index, training
    set, sampler, engine, scorer and timers. Returns (kept rollouts, every extra rollout drawn, metrics)."""
    from dataclasses import replace

    rollout_batch, train_set, sampler, timers = loop.rollout_batch, loop.train_set, loop.sampler, loop.timers
    engine, scorer = loop.engine, loop.scorer

    draws = 0

    def draw(n_prompts: int) -> list[Rollout]:
        nonlocal draws
        prompts = [train_set[i] for i in sampler.next_batch(n_prompts)]
        by_id.update({p.prompt_id: p for p in prompts})
        base = RESAMPLED_GROUP_BASE + rollout_batch * 100_000 + draws * 1_000
        seed = (sampling.seed + 7_919 * (draws + 1)) % (2**31 - 1)
        draws += 1
        with timers.phase("rollout"):
            fresh = engine.generate(prompts, [base + j for j in range(len(prompts))], replace(sampling, seed=seed))
        with timers.phase("reward"):
            extra = scorer.score(fresh, by_id)
        for r, reward in zip(fresh, extra.rewards):
            r.reward = reward
        report.timeouts += extra.timeouts
        report.errors += extra.errors
        report.first_failures += extra.first_failures[: max(0, 5 - len(report.first_failures))]
        return fresh

    n_groups = len({r.group_id for r in rollouts})
    out = fill_signal_groups(rollouts, draw, sampling.n, max_extra_rollouts)
    generated = len(rollouts) + len(out.drawn)
    return (
        out.kept,
        out.drawn,
        {
            "rollout/resampled_rollouts": float(len(out.drawn)),
            "rollout/resampled_share": len(out.drawn) / max(generated, 1),
            "rollout/zero_var_group_frac_drawn": out.zero_var_groups_before / max(n_groups, 1),
            "rollout/resampled_groups_kept": float(out.replaced_groups),
        },
    )
