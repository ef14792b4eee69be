"""Difficulty profile: k samples per prompt on a fixed subset of the training prompts, at the training temperature.

GRPO learns only from groups with mixed rewards, so the spread of the per-prompt solve rate p decides how much
signal a group size gets. `profile` returns the schema other tools read (`difficulty_start.json`,
`difficulty_end.json` in the run dir):

    {"k": int, "prompt_ids": [...], "correct": [counts], "solve_rates": [...],
     "histogram": {"bins": [11 edges 0.0 .. 1.0], "counts": [10 counts]}, "frac_mixed": share with 0.05 < p < 0.95}

A rollout counts as correct when its reward is 1.0. The subset is fixed by the training set alone (not the run
seed), so runs with different seeds profile the same prompts.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from two_grpo.data.batch import Prompt
from two_grpo.rollout.base import Sampling

BIN_EDGES = [i / 10 for i in range(11)]
SUBSET_SEED = 4321


def pick_prompts(train_set: list[Prompt], n: int) -> list[Prompt]:
    """`n` training prompts chosen by a fixed seed (the same subset for every run on this training set)."""
    if n >= len(train_set):
        return list(train_set)
    return [train_set[i] for i in sorted(random.Random(SUBSET_SEED).sample(range(len(train_set)), n))]


def histogram(solve_rates: list[float]) -> dict[str, list]:
    """Counts per bin [0, .1), [.1, .2), ..., [.9, 1.0] (the last bin includes 1.0)."""
    counts = [0] * (len(BIN_EDGES) - 1)
    for p in solve_rates:
        counts[min(int(p * 10), 9)] += 1
    return {"bins": BIN_EDGES, "counts": counts}


def from_counts(prompt_ids: list[int], correct: list[int], k: int) -> dict[str, Any]:
    """The profile dict from each prompt's number of correct samples out of k."""
    rates = [c / k for c in correct]
    n = max(len(rates), 1)
    return {
        "k": k,
        "prompt_ids": list(prompt_ids),
        "correct": list(correct),
        "solve_rates": rates,
        "histogram": histogram(rates),
        "frac_mixed": sum(0.05 < p < 0.95 for p in rates) / n,
        "frac_never": sum(c == 0 for c in correct) / n,
        "frac_always": sum(c == k for c in correct) / n,
        "mean_solve_rate": sum(rates) / n,
    }


def measure(
    engine: Any, scorer: Any, prompts: list[Prompt], k: int, temperature: float, max_new_tokens: int, seed: int
) -> dict[str, Any]:
    """Sample k completions per prompt (temperature `temperature`), score them, return the profile."""
    sampling = Sampling(n=k, temperature=temperature, top_p=1.0, top_k=0, max_new_tokens=max_new_tokens, seed=seed)
    rollouts = engine.generate(prompts, list(range(len(prompts))), sampling)
    report = scorer.score(rollouts, {p.prompt_id: p for p in prompts})
    correct = [0] * len(prompts)
    for r, reward in zip(rollouts, report.rewards):
        correct[r.group_id] += reward == 1.0
    return from_counts([p.prompt_id for p in prompts], correct, k)


def summary_line(tag: str, prof: dict[str, Any]) -> str:
    """One line: how many prompts are mixed, never and always solved, and the histogram counts."""
    return (
        f"difficulty ({tag}): {len(prof['prompt_ids'])} training prompts x {prof['k']} samples: "
        f"{prof['frac_mixed']:.0%} mixed (0.05 < p < 0.95), {prof['frac_never']:.0%} never solved, "
        f"{prof['frac_always']:.0%} always; mean p {prof['mean_solve_rate']:.2f}; "
        f"p histogram (0.1 bins) {prof['histogram']['counts']}"
    )


def write(run_dir: Path, tag: str, prof: dict[str, Any]) -> Path:
    """`run_dir/difficulty_<tag>.json` and, when matplotlib imports, `difficulty_<tag>.png`."""
    path = Path(run_dir) / f"difficulty_{tag}.json"
    path.write_text(json.dumps(prof, indent=1))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return path
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(prof["solve_rates"], bins=BIN_EDGES, edgecolor="black")
    ax.set_xlabel(f"per-prompt solve rate p ({prof['k']} samples)")
    ax.set_ylabel("training prompts")
    ax.set_title(f"difficulty at {tag}: {prof['frac_mixed']:.0%} mixed")
    fig.tight_layout()
    fig.savefig(path.with_suffix(".png"), dpi=100)
    plt.close(fig)
    return path


def profile_run(
    cfg: Any, engine: Any, scorer: Any, train_set: list[Prompt], run_dir: Path, tag: str, dist: Any
) -> dict[str, float]:
    """`eval.difficulty_prompts` training prompts x `eval.difficulty_samples` at the training temperature: writes
    difficulty_<tag>.json (+ .png), prints one line, returns `difficulty/frac_mixed` and `difficulty/mean_p`."""
    if cfg.eval.difficulty_prompts <= 0 or cfg.eval.prompts <= 0:  # eval.prompts=0 turns every eval off
        return {}
    prompts = pick_prompts(train_set, cfg.eval.difficulty_prompts)
    k, temp = cfg.eval.difficulty_samples, cfg.rollout.temperature
    prof = measure(engine, scorer, prompts, k, temp, cfg.rollout.max_response_tokens, cfg.seed + 29)
    if dist.is_main:
        write(run_dir, tag, prof)
        print(summary_line(tag, prof), flush=True)
    return {"difficulty/frac_mixed": prof["frac_mixed"], "difficulty/mean_p": prof["mean_solve_rate"]}
