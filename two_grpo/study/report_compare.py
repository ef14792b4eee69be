"""The comparisons of `two-grpo report`: per-prompt score matrices from eval_outcomes.jsonl, paired comparisons
of every configuration with the baseline (at the end of training and at equal rollouts), Holm-adjusted verdict
lines, and the equal-budget tables (accuracy at the smallest member's rollouts, rollouts- and time-to-target)
from the eval curves. The formulas are in stats.py."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from two_grpo.study import stats
from two_grpo.study.report_data import Config, Run

X_KEYS = {
    "rollouts": "budget/rollouts_total",
    "tokens": "budget/tokens_generated_total",
    "train_s": "time/train_wallclock_s",
}


def metric_benchmark(metric: str) -> str:
    """`eval/<bench>/mean@k` -> bench ("avg" pools every benchmark's prompts)."""
    parts = metric.split("/")
    return parts[1] if len(parts) > 2 else ""


def eval_points(run: Run, bench: str) -> list[tuple[int, dict[str, list[float]]]]:
    """The run's evals in order: (rollouts so far, {"<bench>/<prompt id>": k rewards}); a repeated eval (a
    resumed run) keeps its last lines."""
    points: dict[tuple[int, int], dict[str, list[float]]] = {}
    for o in run.outcomes:
        if bench not in ("", "avg") and o.get("benchmark") != bench:
            continue
        points.setdefault((int(o["step"]), int(o["rollouts"])), {})[f"{o['benchmark']}/{o['prompt_id']}"] = o["rewards"]
    return [(r, scores) for (_, r), scores in sorted(points.items())]


def point_at(run: Run, bench: str, rollouts: float | None) -> tuple[int, dict[str, list[float]]] | None:
    """The final eval (rollouts None) or the eval nearest `rollouts`; None when the run saved no outcomes."""
    pts = eval_points(run, bench)
    if not pts:
        return None
    if rollouts is None:
        return pts[-1]
    return min(pts, key=lambda p: (abs(p[0] - rollouts), -p[0]))


@dataclass
class Arm:
    """One side of a comparison: [S, P] per-prompt mean rewards on the shared seeds and prompts."""

    scores: np.ndarray
    rollouts: list[int]  # the eval's rollouts, per seed


def matrices(a: Config, b: Config, bench: str, rollouts: float | None) -> tuple[Arm, Arm, list[int]] | None:
    """Score matrices of a and b on their shared seeds and shared prompt keys (None if no pairing is possible)."""
    by_seed_a = {r.seed: r for r in a.runs}
    by_seed_b = {r.seed: r for r in b.runs}
    seeds = sorted(set(by_seed_a) & set(by_seed_b))
    pa = {s: point_at(by_seed_a[s], bench, rollouts) for s in seeds}
    pb = {s: point_at(by_seed_b[s], bench, rollouts) for s in seeds}
    seeds = [s for s in seeds if pa[s] is not None and pb[s] is not None]
    if not seeds:
        return None
    keys = set.intersection(*[set(pa[s][1]) & set(pb[s][1]) for s in seeds])  # type: ignore[index]
    keys_sorted = sorted(keys)
    if not keys_sorted:
        return None

    def arm(points: dict) -> Arm:
        m = np.array([[float(np.mean(points[s][1][k])) for k in keys_sorted] for s in seeds])
        return Arm(m, [points[s][0] for s in seeds])

    return arm(pa), arm(pb), seeds


def final_rollouts(c: Config) -> float:
    vals = [r.summary.get("rollouts", math.nan) for r in c.runs]
    return float(np.mean(vals)) if vals else math.nan


@dataclass
class Verdict:
    label: str
    comparison: stats.Comparison
    holm_p: float = 1.0
    word: str = ""
    seeds_to_resolve: int = 0
    note: str = ""

    def line(self, min_effect: float) -> str:
        c = self.comparison
        pts = f"{100 * c.diff:+.1f} pts [{100 * c.lower:+.1f}, {100 * c.upper:+.1f}]".replace("-", "−")
        head = f"{self.label}: {pts}, {c.seeds} seeds × {c.prompts} prompts, Holm p = {self.holm_p:.2g} → {self.word}"
        if self.word == "no difference resolved":
            sd = f"{100 * c.seed_sd:.1f}" if not math.isnan(c.seed_sd) else "?"
            more = (
                f"~{self.seeds_to_resolve} seeds would resolve ±{100 * min_effect:g} pts at the observed seed SD "
                f"of the difference ({sd} pts)"
                if self.seeds_to_resolve
                else "more seeds needed (seed SD unknown with one seed)"
            )
            head += f" (the interval reaches beyond ±{100 * min_effect:g} pts; {more})"
        elif self.word == "equivalent":
            head += f" (the interval lies inside ±{100 * min_effect:g} pts)"
        return head + (f"  [{self.note}]" if self.note else "")


def compare_all(
    configs: list[Config],
    base: Config | None,
    metric: str,
    min_effect: float,
    seed: int = 0,
    pairs: list[tuple[Config, Config]] | None = None,
    end_label: str = "at the end of training",
) -> tuple[list[Verdict], list[str]]:
    """Every configuration vs the baseline (or the given (config, reference) pairs) at the end of training
    and, when the totals differ, at equal rollouts (the smaller total; each run's eval nearest it). Holm over
    all the report's comparisons. Returns (verdicts, notes on comparisons that could not be made)."""
    bench = metric_benchmark(metric)
    out: list[Verdict] = []
    notes: list[str] = []
    if pairs is None:
        pairs = [(c, base) for c in configs if base is not None and c is not base]
    for c, base in pairs:
        ra, rb = final_rollouts(c), final_rollouts(base)
        equal = abs(ra - rb) <= 0.01 * max(ra, rb)
        budgets: list[tuple[str, float | None]] = [
            (
                "at equal rollouts" if equal else f"{end_label} ({ra:,.0f} vs {rb:,.0f} rollouts)",
                None,
            )
        ]
        if not equal:
            budgets.append((f"at equal rollouts ({min(ra, rb):,.0f})", min(ra, rb)))
        for label, at in budgets:
            m = matrices(c, base, bench, at)
            if m is None:
                notes.append(f"{c.name} vs {base.name} {label}: no shared seeds with eval_outcomes.jsonl")
                continue
            a, b, seeds = m
            note = ""
            if at is not None:
                off = max(abs(x - at) for x in a.rollouts + b.rollouts)
                if off > 0.05 * at:
                    notes.append(
                        f"{c.name} vs {base.name} {label}: nearest evals are up to {off:,.0f} rollouts away; "
                        "set eval.every_rollouts (the same for every member) for an exact match"
                    )
                    continue
                if off:
                    note = f"evals within {off:,.0f} rollouts"
            comp = stats.compare(a.scores, b.scores, seed=seed)
            out.append(Verdict(f"{c.name} vs {base.name} {label}", comp, note=note))
    adjusted = stats.holm([v.comparison.p_value for v in out])
    for v, p in zip(out, adjusted):
        v.holm_p = p
        v.word, v.seeds_to_resolve = stats.verdict(v.comparison, p, min_effect)
    return out, notes


def pass_at_ks_of(c: Config, bench: str) -> dict[int, tuple[float, float, float]]:
    """{k: t interval over seeds of Pass@k at the final eval}, k = 1..n samples."""
    per_seed: list[dict[int, float]] = []
    for r in c.runs:
        p = point_at(r, bench, None)
        if p is not None:
            per_seed.append(stats.pass_at_ks(list(p[1].values())))
    if not per_seed:
        return {}
    ks = sorted(set.intersection(*[set(d) for d in per_seed]))
    return {k: stats.t_interval([d[k] for d in per_seed], 0.0, 1.0) for k in ks}


def curve(run: Run, metric: str, xkey: str) -> tuple[list[float], list[float]]:
    pts = [(e[xkey], e[metric]) for e in run.evals if xkey in e and metric in e]
    pts.sort()
    return [x for x, _ in pts], [y for _, y in pts]


def at_budget(c: Config, metric: str, xkey: str, x: float) -> list[float]:
    """Each seed's metric interpolated at x on its eval curve (nan when x is beyond the run)."""
    out = []
    for r in c.runs:
        xs, ys = curve(r, metric, xkey)
        out.append(float(stats.interp_curve(xs, ys, [x])[0]) if xs else math.nan)
    return out


def to_target(c: Config, metric: str, xkey: str, target: float) -> tuple[list[float], int]:
    """(x at which each seed first reaches target, seeds that reached it)."""
    xs = [stats.first_crossing(*curve(r, metric, xkey), target) for r in c.runs]
    return xs, sum(not math.isnan(x) for x in xs)


def equal_budget_rows(
    configs: list[Config], base: Config | None, metric: str, target_share: float
) -> tuple[list[str], list[list[str]], float, float]:
    """The equal-budget table: (header, rows, smallest total rollouts, target)."""
    r_min = min(final_rollouts(c) for c in configs)
    base_final = [curve(r, metric, X_KEYS["rollouts"])[1][-1] for r in base.runs if r.evals] if base else []
    target = target_share * float(np.mean(base_final)) if base_final else math.nan
    head = [
        "config",
        f"{metric.removeprefix('eval/')} at {r_min:,.0f} rollouts (%)",
        f"rollouts to {100 * target_share:g}% of baseline final",
        "train time to it (s)",
    ]
    rows = []
    for c in configs:
        m, lo, hi = stats.t_interval(at_budget(c, metric, X_KEYS["rollouts"], r_min), 0.0, 1.0)
        cells = [c.name, fmt_interval(m, lo, hi, 100)]
        for key in ("rollouts", "train_s"):
            xs, reached = to_target(c, metric, X_KEYS[key], target) if not math.isnan(target) else ([], 0)
            if reached:
                tm, tlo, thi = stats.t_interval([x for x in xs if not math.isnan(x)], 0.0)
                cells.append(fmt_interval(tm, tlo, thi, 1, 0) + f" ({reached}/{len(xs)} seeds)")
            else:
                cells.append(f"not reached (0/{len(c.runs)} seeds)")
        rows.append(cells)
    return head, rows, r_min, target


def fmt_interval(m: float, lo: float, hi: float, scale: float = 1.0, digits: int = 1) -> str:
    if math.isnan(m):
        return "-"
    s = f"{m * scale:,.{digits}f}"
    return s if math.isnan(lo) else f"{s} [{lo * scale:,.{digits}f}, {hi * scale:,.{digits}f}]"


def difficulty_profile(configs: list[Config]) -> dict[str, Any] | None:
    """The first run's difficulty_start.json, if any: its per-prompt solve rates (a list under `solve_rates`,
    or `prompts: [{solve_rate}]`) summarised as a 10-bin histogram and the share in (0.05, 0.95)."""
    for c in configs:
        for r in c.runs:
            path = Path(r.run_dir) / "difficulty_start.json"
            if path.is_file():
                data = json.loads(path.read_text())
                rates = data.get("solve_rates")
                if isinstance(rates, dict):
                    rates = list(rates.values())
                if rates is None and isinstance(data.get("prompts"), list):
                    rates = [p.get("solve_rate") for p in data["prompts"] if isinstance(p, dict)]
                rates = [float(x) for x in rates or [] if isinstance(x, (int, float))]
                if not rates:
                    return None
                hist, _ = np.histogram(rates, bins=10, range=(0.0, 1.0))
                spread = sum(0.05 < x < 0.95 for x in rates) / len(rates)
                return {"path": str(path), "prompts": len(rates), "hist": hist.tolist(), "spread": spread}
    return None
