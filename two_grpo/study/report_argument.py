"""The paper's argument in `two-grpo report`: gradient noise against G, resampling's budget, the probe's check.

- Gradient noise (runs that logged `grad_noise/*`, diagnostics.grad_noise=true): per run, over its logged steps,
  B_simple = mean(trace_cov) / mean(grad_sq) / mean(tokens_per_rollout) (rollouts; a ratio of means, steadier
  than the mean of per-step ratios; the last factor turns token_mean's per-token units into rollouts), the noise
  per rollout tr(Sigma) = mean(trace_cov) / mean(tokens_per_rollout) (B_simple x |G|^2), the mini-batch SNR = rollouts per mini-batch /
  B_simple, and mean(ref_cos) when references were taken. Per configuration: mean [exact t interval] over seeds.
  Series against G: configurations with the same rollouts per mini-batch (prompts x G: matched rollouts) and
  with the same prompts per mini-batch (matched prompts). The verdict compares G=2 with G=16 (matched rollouts
  first): the ratio of tr(Sigma) per rollout, then of B_simple, each the geometric mean over shared seeds of the
  per-seed ratios with the exact t interval of the mean log-ratio (exponentiated). tr(Sigma) depends on the
  gradient's scale (the advantages' size); B_simple = tr(Sigma) / |G_true|^2 does not: it is the noise per
  rollout in units of the signal, unresolved when the run's |G|^2 estimate is <= 0.
- Resampling (members with algo.resample_zero_var=true): the extra rollouts' share of the budget, and how much of
  2-GRPO's saving they give back: (R_rs - R_plain) / (R_big - R_plain), with R the run's total rollouts of the
  resampling member, the same setting without it, and the baseline at larger G, per shared seed, t interval.
- Probe check (a `probe.json` from `two-grpo probe` in the sweep dir or its `probe/` folder): the predicted
  zero-variance fraction at each member's G against the observed one in the runs' first rollout batch (the
  initial policy), pooled over seeds; z = difference / combined standard error (probe.check_against_run).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from two_grpo.study import stats
from two_grpo.study.report_data import Config, Run

NOISE_KEYS = ("b_simple", "trace_cov", "snr", "ref_cos")
NOISE_LABELS = {
    "b_simple": "B_simple (rollouts)",
    "trace_cov": "noise per rollout tr(Σ)",
    "snr": "mini-batch SNR",
    "ref_cos": "cos to large-batch ref.",
}


def _cfg(run: Run, *keys: str) -> Any:
    v: Any = run.config
    for k in keys:
        v = (v or {}).get(k)
    return v


def rollouts_per_minibatch(run: Run) -> int:
    return int(_cfg(run, "prompts_per_minibatch") or 0) * int(_cfg(run, "group_size") or 0)


def run_noise(run: Run) -> dict[str, float] | None:
    """A run's gradient-noise summary over its logged steps, or None when it logged none."""
    rows = [s for s in run.steps if "grad_noise/trace_cov" in s and "grad_noise/grad_sq" in s]
    if not rows:
        return None
    trace = sum(s["grad_noise/trace_cov"] for s in rows) / len(rows)
    grad_sq = sum(s["grad_noise/grad_sq"] for s in rows) / len(rows)
    unit = sum(s.get("grad_noise/tokens_per_rollout", 1.0) for s in rows) / len(rows)  # token_mean: tokens
    b_simple = trace / grad_sq / unit if grad_sq > 0 else math.nan  # rollouts; nan: no signal resolved
    refs = [s["grad_noise/ref_cos"] for s in run.steps if "grad_noise/ref_cos" in s]
    return {
        "b_simple": b_simple,
        "trace_cov": trace / unit,  # per rollout (token_mean: per token / tokens per rollout)
        "snr": rollouts_per_minibatch(run) / b_simple if b_simple > 0 else math.nan,
        "ref_cos": sum(refs) / len(refs) if refs else math.nan,
        "steps": float(len(rows)),
    }


def noise_rows(configs: list[Config]) -> list[dict[str, Any]]:
    """One row per configuration with grad-noise data: G, prompts and rollouts per mini-batch, per-seed values
    and (mean, lower, upper) t intervals of each NOISE_KEYS entry."""
    out = []
    for c in configs:
        per_seed = {r.seed: n for r in c.runs if (n := run_noise(r)) is not None}
        if not per_seed:
            continue
        run = c.runs[0]
        row: dict[str, Any] = {
            "config": c.name,
            "G": int(_cfg(run, "group_size") or 0),
            "prompts": int(_cfg(run, "prompts_per_minibatch") or 0),
            "rollouts": rollouts_per_minibatch(run),
            "seeds": per_seed,
        }
        for k in NOISE_KEYS:
            row[k] = stats.t_interval([n[k] for n in per_seed.values()])
        out.append(row)
    return out


def ratio_interval(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, float, int]:
    """(geometric-mean ratio a/b, lower, upper, seeds) over the seeds both have with positive finite values:
    exact t interval of the mean per-seed log-ratio, exponentiated."""
    logs = [
        math.log(a[s] / b[s]) for s in sorted(set(a) & set(b)) if all(math.isfinite(v) and v > 0 for v in (a[s], b[s]))
    ]
    m, lo, hi = stats.t_interval(logs)
    return math.exp(m) if logs else math.nan, math.exp(lo), math.exp(hi), len(logs)


def _word(lo: float, hi: float, n: int) -> str:
    if n < 2:
        return "one seed, no interval"
    return "higher" if lo > 1 else ("lower" if hi < 1 else "no difference resolved")


def noise_verdict(rows: list[dict[str, Any]], small: int = 2, large: int = 16) -> str:
    """One sentence: is G=small's gradient noise per rollout higher than G=large's, and by how much: tr(Sigma) per
    rollout (the verdict), then B_simple (the same relative to the signal), as geometric-mean ratios over seeds."""
    pairs = [(a, b) for a in rows for b in rows if a["G"] == small and b["G"] == large]
    pairs.sort(key=lambda p: (p[0]["rollouts"] != p[1]["rollouts"], p[0]["prompts"] != p[1]["prompts"]))
    if not pairs:
        return f"No gradient-noise verdict: it needs members at G={small} and G={large} with grad_noise/* logged."
    a, b = pairs[0]
    match = (
        f"matched {a['rollouts']} rollouts per mini-batch"
        if a["rollouts"] == b["rollouts"]
        else (f"matched {a['prompts']} prompts per mini-batch" if a["prompts"] == b["prompts"] else "unmatched")
    )

    def ratio(key: str) -> tuple[float, float, float, int]:
        return ratio_interval(*({s: n[key] for s, n in r["seeds"].items()} for r in (a, b)))

    r, lo, hi, n = ratio("trace_cov")
    if n == 0:
        return f"No gradient-noise verdict: {a['config']} and {b['config']} share no seed with tr(Σ) measured."
    ci = f" [{lo:.2f}, {hi:.2f}]" if n >= 2 else ""
    line = (
        f"{small}-GRPO's gradient noise per rollout, tr(Σ) ({a['config']}), is {r:.2f}×{ci} {large}-GRPO's "
        f"({b['config']}), {match}, {n} seed(s), 95% t interval of the geometric mean ratio → {_word(lo, hi, n)}; "
    )
    rb, lob, hib, nb = ratio("b_simple")
    if nb == 0:
        return line + (
            "relative to the signal (B_simple = tr Σ / |G|²) not resolved: the |G|² estimate is <= 0 over the run "
            "(noise swamps the signal at this mini-batch size)."
        )
    cib = f" [{lob:.2f}, {hib:.2f}]" if nb >= 2 else ""
    return (
        line
        + f"relative to the signal, B_simple = tr Σ / |G|² is {rb:.2f}×{cib}, {nb} seed(s) → {_word(lob, hib, nb)}."
    )


def fmt_t(v: tuple[float, ...], digits: int = 3) -> str:
    m, lo, hi = v
    if math.isnan(m):
        return "-"
    s = f"{m:.{digits}g}"
    return s if math.isnan(lo) else f"{s} [{lo:.{digits}g}, {hi:.{digits}g}]"


def noise_section(configs: list[Config]) -> tuple[list[str], list[dict[str, Any]]]:
    """Markdown lines of the gradient-noise section (empty when no run logged grad_noise/*), and its rows."""
    rows = noise_rows(configs)
    if not rows:
        return [], rows
    head = ["config", "G", "prompts/mb", "rollouts/mb", "seeds"] + [NOISE_LABELS[k] for k in NOISE_KEYS]
    md = [
        "",
        "## Gradient noise against G",
        "",
        "From `grad_noise/*` (diagnostics.grad_noise: K disjoint sets of whole groups per step, count-sketched). Per "
        "run: B_simple = mean tr(Σ) / mean |G|² over its steps, in rollouts (token_mean: divided by the mean tokens per rollout); SNR = rollouts per mini-batch / "
        "B_simple; tr(Σ) per rollout = B_simple × |G|²; mean [exact 95% t interval] over seeds. B_simple is free of "
        "the gradient's scale, so it compares noise relative to signal across G, lr and advantage scales; tr(Σ) "
        "scales with the squared advantages; '-' = the |G|² estimate was <= 0 over the run (noise swamps it). Plot: gradient_noise.png (matched rollouts per mini-batch, and matched prompts).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for r in rows:
        cells = [r["config"], str(r["G"]), str(r["prompts"]), str(r["rollouts"]), str(len(r["seeds"]))]
        md.append("| " + " | ".join(cells + [fmt_t(r[k]) for k in NOISE_KEYS]) + " |")
    md += ["", f"- {noise_verdict(rows)}"]
    return md, rows


def series(rows: list[dict[str, Any]], match: str) -> dict[int, list[dict[str, Any]]]:
    """Rows grouped by `match` ("rollouts" or "prompts"), groups with at least two distinct G, sorted by G."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r[match], []).append(r)
    return {k: sorted(v, key=lambda r: r["G"]) for k, v in groups.items() if len({r["G"] for r in v}) >= 2}


def plot_noise(rows: list[dict[str, Any]], out_dir: Path) -> Path | None:
    """gradient_noise.png: B_simple, tr(Σ) and SNR against G (log2), one panel row per matching; None if no
    series has two G."""
    matchings = [(m, series(rows, m)) for m in ("rollouts", "prompts")]
    matchings = [(m, s) for m, s in matchings if s]
    if not matchings:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = ("b_simple", "trace_cov", "snr")
    fig, axes = plt.subplots(len(matchings), 3, figsize=(13, 3.6 * len(matchings)), squeeze=False)
    for i, (match, groups) in enumerate(matchings):
        for j, key in enumerate(keys):
            ax = axes[i][j]
            for value, rs in sorted(groups.items()):
                xs = [r["G"] for r in rs]
                ms = [r[key][0] for r in rs]
                err = [
                    [m - r[key][1] if not math.isnan(r[key][1]) else 0 for m, r in zip(ms, rs)],
                    [r[key][2] - m if not math.isnan(r[key][2]) else 0 for m, r in zip(ms, rs)],
                ]
                ax.errorbar(xs, ms, yerr=err, marker="o", capsize=3, label=f"{value} {match}/mb")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("group size G")
            ax.set_title(f"{NOISE_LABELS[key]} (matched {match})", fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "gradient_noise.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_resampled(run: Run) -> float:
    return float(sum(b.get("rollout/resampled_rollouts", 0.0) for b in run.batches()))


def resample_rows(
    configs: list[Config], baseline: Config | None, pairs: list[tuple[Config, Config]] | None = None
) -> list[dict[str, Any]]:
    """Per resampling member: its plain partner (a comparison partner in `pairs`, else the same G and prompts
    without resampling), the extra rollouts' share of its budget, and the share of the saving given back."""

    def setting(c: Config) -> tuple[Any, ...]:
        r = c.runs[0]
        return _cfg(r, "group_size"), _cfg(r, "prompts_per_minibatch"), _cfg(r, "lr")

    def resamples(c: Config) -> bool:
        return bool(_cfg(c.runs[0], "algo", "resample_zero_var"))

    out = []
    for c in configs:
        if not resamples(c):
            continue
        partner = next((b for a, b in pairs or [] if a is c and not resamples(b)), None)
        partner = partner or next((p for p in configs if not resamples(p) and setting(p) == setting(c)), None)
        big = baseline if baseline is not None and baseline is not c and baseline is not partner else None
        rs = {r.seed: (float(r.summary.get("rollouts", math.nan)), run_resampled(r)) for r in c.runs}
        share = [x / t for t, x in rs.values() if t > 0]
        row: dict[str, Any] = {
            "config": c.name,
            "partner": partner.name if partner else "",
            "big": big.name if big else "",
            "rollouts": stats.t_interval([t for t, _ in rs.values()]),
            "resampled": stats.t_interval([x for _, x in rs.values()]),
            "share": stats.t_interval(share, 0.0, 1.0),
            "give_back": (math.nan, math.nan, math.nan),
            "give_back_seeds": 0,
        }
        if partner is not None and big is not None:
            plain = {r.seed: float(r.summary.get("rollouts", math.nan)) for r in partner.runs}
            large = {r.seed: float(r.summary.get("rollouts", math.nan)) for r in big.runs}
            back = [
                (rs[s][0] - plain[s]) / (large[s] - plain[s])
                for s in sorted(set(rs) & set(plain) & set(large))
                if large[s] - plain[s] > 0
            ]
            row["give_back"], row["give_back_seeds"] = stats.t_interval(back), len(back)
            row["partner_rollouts"] = stats.t_interval(list(plain.values()))
            row["big_rollouts"] = stats.t_interval(list(large.values()))
        out.append(row)
    return out


def resample_section(configs: list[Config], baseline: Config | None, pairs=None) -> list[str]:
    rows = resample_rows(configs, baseline, pairs)
    if not rows:
        return []
    md = [
        "",
        "## Resampling on an honest budget",
        "",
        "Every re-drawn rollout is in the member's budget. Share = resampled rollouts / all its rollouts. Given "
        "back = (its rollouts - the plain member's) / (the baseline's - the plain member's), per shared seed: the "
        "share of 2-GRPO's rollout saving that resampling spends again (0 = none, 1 = all). Mean [exact 95% t "
        "interval] over seeds; the accuracy comparison is in the verdicts.",
        "",
        "| member | plain | baseline | rollouts | resampled rollouts | share of its budget | plain's rollouts | "
        "baseline's rollouts | saving given back |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    none = (math.nan, math.nan, math.nan)
    for r in rows:
        md.append(
            f"| {r['config']} | {r['partner'] or '-'} | {r['big'] or '-'} | {fmt_t(r['rollouts'], 5)} | "
            f"{fmt_t(r['resampled'], 4)} | {fmt_pct(r['share'])} | {fmt_t(r.get('partner_rollouts', none), 5)} | "
            f"{fmt_t(r.get('big_rollouts', none), 5)} | {fmt_pct(r['give_back'])} |"
        )
    return md


def fmt_pct(v: tuple[float, ...]) -> str:
    m, lo, hi = v
    if math.isnan(m):
        return "-"
    return f"{100 * m:.1f}%" if math.isnan(lo) else f"{100 * m:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def find_probe(paths: list[Path]) -> Path | None:
    for p in paths:
        for cand in (p / "probe.json", p / "probe" / "probe.json"):
            if cand.is_file():
                return cand
    return None


def probe_rows(configs: list[Config], probe: dict[str, Any]) -> list[dict[str, Any]]:
    """Per configuration at a probed G (resampling members left out: their logged fraction is after re-drawing):
    the prediction against its runs' first rollout batch, pooled over seeds."""
    from two_grpo.config.schema import ConfigError
    from two_grpo.study.probe import GroupSizeRow, binomial_se, check_against_run

    table = [GroupSizeRow(**r) for r in probe["table"]]
    sizes = {r.group_size for r in table}
    out = []
    for c in configs:
        if _cfg(c.runs[0], "algo", "resample_zero_var") or int(_cfg(c.runs[0], "group_size") or 0) not in sizes:
            continue
        checks = []
        for run in c.runs:
            try:
                checks.append(check_against_run(Path(run.run_dir), table, 1))
            except (ValueError, OSError, KeyError, ConfigError):  # not a readable run: left out
                continue
        if not checks:
            continue
        groups = sum(k["groups"] for k in checks)
        observed = sum(k["observed_zero_var_frac"] * k["groups"] for k in checks) / groups
        predicted = checks[0]["predicted_zero_var_frac"]
        row = next(r for r in table if r.group_size == checks[0]["group_size"])
        se = math.hypot(binomial_se(predicted, groups), row.signal_frac_se)
        out.append(
            {
                "config": c.name,
                "G": checks[0]["group_size"],
                "runs": len(checks),
                "groups": groups,
                "predicted": predicted,
                "observed": observed,
                "z": (observed - predicted) / se,
            }
        )
    return out


def probe_section(configs: list[Config], paths: list[Path]) -> list[str]:
    path = find_probe(paths)
    if path is None:
        return []
    probe = json.loads(path.read_text())
    rows = probe_rows(configs, probe)
    md = [
        "",
        "## The probe's prediction against the runs' start",
        "",
        f"`two-grpo probe` ({path}: {probe.get('prompts')} prompts x {probe.get('samples')} samples, solve rate "
        f"{probe.get('solve_rate', math.nan):.3f}, recommended G={probe.get('recommended_group_size')}). Observed: "
        "the zero-variance share of the first rollout batch (the initial policy), pooled over seeds; z = "
        "(observed - predicted) / combined standard error (binomial over the groups, and the probe's own); "
        "|z| < 2 = within sampling error.",
        "",
        "| config | G | runs | groups | predicted zero-var | observed zero-var | z | within sampling error |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['config']} | {r['G']} | {r['runs']} | {r['groups']} | {100 * r['predicted']:.1f}% | "
            f"{100 * r['observed']:.1f}% | {r['z']:+.2f} | {'yes' if abs(r['z']) < 2 else 'no'} |"
        )
    if not rows:
        md.append("| (no member at a probed G with metrics) | | | | | | | |")
    return md
