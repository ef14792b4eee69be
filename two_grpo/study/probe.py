"""`two-grpo probe [KEY=VALUE ...]`: how many rollouts per prompt do I need? Measured before training.

    two-grpo probe                                   the embedded default: 64 prompts x 16 samples
    two-grpo probe experiment=paper_2grpo probe.prompts=128 probe.samples=32
    two-grpo probe probe.check_run=runs/<id>          compare the prediction with that run's first rollout batch

Draws `probe.samples` (k) completions for `probe.prompts` (N) training prompts with the initial model and the
training sampling settings, and counts each prompt's correct samples c_i (reward == 1). For each group size G it
predicts, from those counts alone:
- `signal_frac`: the share of groups whose rewards are not all equal (the only groups with a gradient);
- `grad_rollouts_per_1k`: rollouts in such groups per 1,000 rollouts (= 1000 * signal_frac);
- `signal_prompts_per_1k`: distinct prompts with signal per 1,000 rollouts (= 1000 * signal_frac / G): small G
  spreads a rollout budget over more prompts, large G wastes fewer rollouts;
- `adv_abs_mean`: the expected mean |advantage| per rollout under the configured `algo.advantage`;
- `grad_rollouts_per_s`: signal_frac / (measured seconds per rollout at that G).
It recommends the G with the most gradient-carrying rollouts per second, and prints the whole trade-off.

Estimators: for G <= k a group's reward count j is drawn from the prompt's own k samples without replacement
(hypergeometric), which is an unbiased estimate of the binomial expectation at the prompt's true solve rate
(a U-statistic; `evaluate.zero_var_prob` is its zero-variance case). For G > k it falls back to the plug-in
binomial at p_i = c_i / k, which is biased (marked `plug_in` in the table). Rewards are treated as binary
(1 = correct); with graded rewards the prediction counts only exact solves.

Written: `<out>/probe.json` (per-prompt counts, the table, the recommendation, the config). Nothing trains.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from math import comb
from pathlib import Path
from typing import Any

PROBE_GROUP_SIZES = (2, 4, 8, 16, 32)
DEFAULTS = {"prompts": 64, "samples": 16, "out": "", "check_run": "", "check_batches": 1, "time_rollouts": 128}


@dataclass(frozen=True)
class GroupSizeRow:
    group_size: int
    signal_frac: float  # share of groups with unequal rewards
    signal_frac_se: float  # standard error over the probed prompts
    grad_rollouts_per_1k: float
    signal_prompts_per_1k: float
    adv_abs_mean: float  # E[mean |A| over a group's rollouts], zero-variance groups included (as 0)
    s_per_rollout: float  # measured generation seconds per rollout at this G (0 = not measured)
    grad_rollouts_per_s: float
    plug_in: bool  # G > k: plug-in binomial (biased) instead of the unbiased hypergeometric estimate


def count_distribution(n: int, c: int, group_size: int) -> list[float]:
    """P(j correct in a group of `group_size`) for j = 0..G, estimated from n samples with c correct.

    G <= n: hypergeometric (G of the n samples without replacement), unbiased for the binomial at the true p.
    G > n: binomial at p = c / n (plug-in)."""
    g = group_size
    if g <= n:
        total = comb(n, g)
        return [comb(c, j) * comb(n - c, g - j) / total for j in range(g + 1)]
    p = c / n
    return [comb(g, j) * p**j * (1 - p) ** (g - j) for j in range(g + 1)]


def group_adv_abs_mean(group_size: int, estimator: str, std: str, eps: float) -> list[float]:
    """Mean |advantage| over a group of G binary rewards with j ones, for j = 0..G (pure; uses algo/advantages).

    `batch_std` depends on the whole batch; here it is computed over the one group (an approximation)."""
    import torch

    from two_grpo.algo.advantages import compute_advantages

    out = []
    for j in range(group_size + 1):
        rewards = torch.tensor([1.0] * j + [0.0] * (group_size - j))
        adv, _ = compute_advantages(rewards, torch.zeros(group_size, dtype=torch.long), estimator, std, eps)
        out.append(float(adv.abs().mean()))
    return out


def predict(
    correct: list[int],
    samples: int,
    group_sizes: tuple[int, ...] = PROBE_GROUP_SIZES,
    estimator: str = "grpo",
    std: str = "population",
    eps: float = 1e-6,
    s_per_rollout: dict[int, float] | None = None,
) -> list[GroupSizeRow]:
    """The planner's table from per-prompt correct counts `correct` (each out of `samples`)."""
    if not correct:
        raise ValueError("predict needs at least one probed prompt")
    rows = []
    for g in group_sizes:
        adv_by_j = group_adv_abs_mean(g, estimator, std, eps)
        signal, adv = [], []
        for c in correct:
            dist = count_distribution(samples, c, g)
            signal.append(1.0 - dist[0] - dist[g])
            adv.append(sum(p * a for p, a in zip(dist, adv_by_j)))
        n = len(signal)
        frac = sum(signal) / n
        se = math.sqrt(sum((s - frac) ** 2 for s in signal) / (n - 1) / n) if n > 1 else float("nan")
        cost = (s_per_rollout or {}).get(g, 0.0)
        rows.append(
            GroupSizeRow(
                group_size=g,
                signal_frac=frac,
                signal_frac_se=se,
                grad_rollouts_per_1k=1000.0 * frac,
                signal_prompts_per_1k=1000.0 * frac / g,
                adv_abs_mean=sum(adv) / n,
                s_per_rollout=cost,
                grad_rollouts_per_s=frac / cost if cost > 0 else 0.0,
                plug_in=g > samples,
            )
        )
    return rows


def recommend(rows: list[GroupSizeRow]) -> int:
    """The G with the most gradient-carrying rollouts per second (per 1,000 rollouts when no cost was measured)."""
    timed = [r for r in rows if r.grad_rollouts_per_s > 0]
    if timed:
        return max(timed, key=lambda r: r.grad_rollouts_per_s).group_size
    return max(rows, key=lambda r: r.grad_rollouts_per_1k).group_size


def binomial_se(p: float, n: int) -> float:
    """Standard error of a share p over n draws, floored at p = 0.5/n so that it never vanishes at p = 0 or 1
    (a prediction of 0% and one zero-variance group in 512 is within sampling error, not z = 10^4)."""
    floor = 0.5 / n
    q = min(max(p, floor), 1.0 - floor)
    return math.sqrt(q * (1.0 - q) / n)


def check_against_run(run_dir: Path, rows: list[GroupSizeRow], batches: int) -> dict[str, float]:
    """Observed zero-variance fraction over a run's first `batches` rollout batches vs the probe's prediction at
    the run's group size; z = difference / combined standard error (binomial over the run's groups)."""
    from two_grpo.run.resume import load_saved_config

    saved = load_saved_config(run_dir)
    group_size, prompts = saved.group_size, saved.prompts_per_rollout
    seen: dict[int, float] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        if m["rollout_batch"] < batches:
            seen.setdefault(m["rollout_batch"], m["rollout/zero_var_group_frac"])
    if not seen:
        raise ValueError(f"{run_dir}/metrics.jsonl has no rollout batch < {batches}")
    row = next((r for r in rows if r.group_size == group_size), None)
    if row is None:
        raise ValueError(f"the run's group_size={group_size} is not among the probed sizes")
    observed = sum(seen.values()) / len(seen)
    predicted = 1.0 - row.signal_frac
    n_groups = prompts * len(seen)
    se = math.hypot(binomial_se(predicted, n_groups), row.signal_frac_se)
    return {
        "group_size": group_size,
        "rollout_batches": len(seen),
        "groups": n_groups,
        "observed_zero_var_frac": observed,
        "predicted_zero_var_frac": predicted,
        "z": (observed - predicted) / se,
    }


def split_probe_args(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """`probe.KEY=VALUE` arguments (typed like DEFAULTS) apart from the train overrides."""
    opts: dict[str, Any] = dict(DEFAULTS)
    rest = []
    for arg in argv:
        if arg.startswith("probe."):
            key, _, value = arg[len("probe.") :].partition("=")
            if key not in DEFAULTS:
                raise ValueError(f"unknown probe option 'probe.{key}'; use one of: {', '.join(DEFAULTS)}")
            kind = type(DEFAULTS[key])
            try:
                opts[key] = kind(value)
            except ValueError:
                raise ValueError(f"probe.{key}={value!r}: expected {kind.__name__}") from None
        else:
            rest.append(arg)
    if opts["prompts"] < 2 or opts["samples"] < 2:
        raise ValueError("probe.prompts and probe.samples must be >= 2")
    return opts, rest


def time_generation(engine: Any, prompts: list[Any], cfg: Any, group_sizes: tuple[int, ...], rollouts: int):
    """Seconds per rollout of one generate call of about `rollouts` rollouts (rollouts // G prompts x G), per G."""
    from two_grpo.rollout.base import Sampling

    r = cfg.rollout
    out = {}
    for g in group_sizes:
        batch = prompts[: max(1, rollouts // g)]
        sampling = Sampling(g, r.temperature, r.top_p, r.top_k, r.max_response_tokens, cfg.seed + 29)
        t0 = time.perf_counter()
        got = engine.generate(batch, list(range(len(batch))), sampling)
        out[g] = (time.perf_counter() - t0) / max(len(got), 1)
    return out


def run_probe(cfg: Any, opts: dict[str, Any]) -> dict[str, Any]:
    """Load what training would load, draw the samples, time generation per G, and build the table."""
    from two_grpo.data.sampler import PromptSampler
    from two_grpo.models.loading import load_model, load_tokenizer, resolve_model_path
    from two_grpo.rollout import make_engine
    from two_grpo.rollout.base import Sampling
    from two_grpo.tasks import make_task
    from two_grpo.tasks.rewards import RewardScorer

    model_path = resolve_model_path(cfg.model)
    tokenizer = load_tokenizer(model_path, cfg.model.trust_remote_code)
    task = make_task(cfg.task, tokenizer)
    train_set = task.train_prompts()
    n = min(opts["prompts"], len(train_set))
    # a seeded draw of its own (not the run's first batch), so a check against a run is out of sample
    prompts = [train_set[i] for i in PromptSampler(len(train_set), n, cfg.seed + 1).next_batch()]
    scorer = RewardScorer(task, cfg.task.reward_timeout_s, cfg.task.reward_workers)
    try:
        engine = make_engine(cfg, load_model(model_path, cfg.model), tokenizer, model_path)
        r = cfg.rollout
        k = opts["samples"]
        t0 = time.perf_counter()
        rollouts = engine.generate(
            prompts, list(range(n)), Sampling(k, r.temperature, r.top_p, r.top_k, r.max_response_tokens, cfg.seed)
        )
        sample_s = time.perf_counter() - t0
        report = scorer.score(rollouts, {p.prompt_id: p for p in prompts})
    finally:
        scorer.close()
    correct = [0] * n
    for ro, reward in zip(rollouts, report.rewards):
        correct[ro.group_id] += reward == 1.0
    sizes = tuple(sorted({*PROBE_GROUP_SIZES, cfg.group_size}))  # the configured G is always in the table
    costs = time_generation(engine, prompts, cfg, sizes, opts["time_rollouts"])
    rows = predict(correct, k, sizes, cfg.algo.advantage, cfg.algo.adv_std, cfg.algo.adv_eps, costs)
    return {
        "model": cfg.model.path,
        "task": cfg.task.name,
        "engine": engine.name,
        "prompts": n,
        "samples": k,
        "solve_rate": sum(correct) / (n * k),
        "prompt_ids": [p.prompt_id for p in prompts],
        "correct": correct,
        "sample_s": sample_s,
        "advantage": cfg.algo.advantage,
        "table": [asdict(row) for row in rows],
        "recommended_group_size": recommend(rows),
        "configured_group_size": cfg.group_size,
    }


def format_table(result: dict[str, Any]) -> str:
    """The planner's table as fixed-width text (fits 100 columns)."""
    head = f"{'G':>3} {'signal groups':>16} {'grad rollouts':>14} {'signal prompts':>15} {'|adv|':>6} "
    head += f"{'ms/rollout':>10} {'grad rollouts/s':>15}"
    lines = [head, f"{'':>3} {'(frac, +-SE)':>16} {'per 1k':>14} {'per 1k':>15} {'':>6} {'':>10} {'':>15}"]
    for r in result["table"]:
        mark = "*" if r["plug_in"] else " "
        lines.append(
            f"{r['group_size']:>3} {r['signal_frac']:>9.3f} +-{r['signal_frac_se']:.3f}{mark} "
            f"{r['grad_rollouts_per_1k']:>13.0f} {r['signal_prompts_per_1k']:>15.1f} {r['adv_abs_mean']:>6.3f} "
            f"{1000 * r['s_per_rollout']:>10.2f} {r['grad_rollouts_per_s']:>15.0f}"
        )
    return "\n".join(lines)


def print_result(result: dict[str, Any], out: Path) -> None:
    p = result
    print(
        f"probe: {p['prompts']} prompts x {p['samples']} samples of {p['model']} on {p['task']} ({p['engine']}), "
        f"solve rate {p['solve_rate']:.3f}, {p['sample_s']:.1f}s"
    )
    print(format_table(p))
    if any(r["plug_in"] for r in p["table"]):
        print(f"* G > probe.samples={p['samples']}: plug-in binomial estimate (biased); raise probe.samples for it")
    g = p["recommended_group_size"]
    print(
        f"recommended group_size={g}: the most gradient-carrying rollouts per second here "
        f"(configured: {p['configured_group_size']}). Smaller G spreads the same rollouts over more prompts "
        "(signal prompts per 1k); weigh that against the rollouts zero-variance groups waste."
    )
    if "check" in p:
        c = p["check"]
        print(
            f"check: the run's first {c['rollout_batches']} rollout batch(es) at G={c['group_size']} had "
            f"{c['observed_zero_var_frac']:.3f} zero-variance groups; predicted {c['predicted_zero_var_frac']:.3f} "
            f"(z = {c['z']:+.2f} over {c['groups']} groups)"
        )
    print(f"written: {out}")


def cmd_probe(argv: list[str]) -> int:
    from two_grpo.config.compose import compose, format_config_error, is_config_exception, to_train_config
    from two_grpo.config.schema import ConfigError

    if "--help" in argv or "-h" in argv:
        print(__doc__)
        return 0
    try:
        opts, overrides = split_probe_args(argv)
        cfg = compose(overrides)
        if not cfg.run_id:
            cfg.run_id = "probe"
        typed = to_train_config(cfg)
    except (ValueError, ConfigError) as exc:
        print(f"two-grpo: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not is_config_exception(exc):
            raise
        print(f"two-grpo: error: {format_config_error(exc, argv)}", file=sys.stderr)
        return 2
    check_dir = Path(opts["check_run"]) if opts["check_run"] else None
    if check_dir is not None and not (check_dir / "metrics.jsonl").is_file():
        print(f"two-grpo: error: probe.check_run={check_dir}: no metrics.jsonl there (give a run dir)", file=sys.stderr)
        return 2
    out = Path(opts["out"] or Path("runs") / f"probe-{time.strftime('%Y%m%d-%H%M%S')}") / "probe.json"
    try:
        result = run_probe(typed, opts)
    except ConfigError as exc:
        print(f"two-grpo: error: {exc}", file=sys.stderr)
        return 2
    if check_dir is not None:
        rows = [GroupSizeRow(**r) for r in result["table"]]
        try:
            result["check"] = check_against_run(check_dir, rows, opts["check_batches"])
        except ValueError as exc:
            print(f"two-grpo: error: probe.check_run: {exc}", file=sys.stderr)
            return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print_result(result, out)
    return 0
