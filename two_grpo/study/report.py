"""`two-grpo report <SWEEP_DIR | RUN_DIR | FOLDER_OF_RUNS ...> [--baseline NAME] [--out DIR] [--metric KEY]`

Verdicts first: every configuration against the baseline as paired differences over shared seeds and eval
prompts (eval_outcomes.jsonl), at the end of training and at equal rollouts, with bootstrap intervals,
Holm-adjusted p-values and one line in words each (better / worse / equivalent / no difference resolved, with the
seeds that would resolve it). Then one row per configuration (runs that differ only in seed): final eval and
the mean of the last N evals with exact t intervals clipped to [0, 100]%, IQM over seeds, Pass@1..k, rollouts,
tokens, optimizer steps, wall-clock per phase and the share of the baseline's budget; equal-budget tables
(accuracy at the smallest member's rollouts, rollouts- and time-to-target); signal accounting; the difficulty
profile (difficulty_start.json); the paper's argument (report_argument.py): gradient noise against G with its
verdict, resampling's share of the budget, and the probe's prediction against the runs' start (probe.json). Writes report.md, report.csv and PNG plots into --out (default
<sweep dir>/report).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path
from typing import Any

from two_grpo.config.schema import ConfigError
from two_grpo.study import stats
from two_grpo.study.report_data import (
    LAST_N,
    PHASES,
    aggregate,
    collect,
    eval_metric_names,
    primary_metric,
    ratio_sentence,
    ratios,
)

MIN_EFFECT = 0.05  # report.min_effect: differences smaller than this (5 points) count as no difference
TARGET_SHARE = 0.95  # rollouts-/time-to-target: this share of the baseline's final metric


def fmt(v: tuple[float, float] | float, scale: float = 1.0, digits: int = 1) -> str:
    m, h = v if isinstance(v, tuple) else (v, math.nan)
    if m is None or (isinstance(m, float) and math.isnan(m)):
        return "-"
    s = f"{m * scale:,.{digits}f}"
    return s if math.isnan(h) else f"{s} ± {h * scale:,.{digits}f}"


def fmt_count(v: tuple[float, float]) -> str:
    m = v[0]
    if math.isnan(m):
        return "-"
    return f"{m / 1e6:,.2f} M" if m >= 1e7 else f"{m:,.0f}"


def fmt_clipped(values: list[float], scale: float = 100.0) -> str:
    """Mean [exact t interval clipped to the metric's range 0..1] of per-seed values."""
    from two_grpo.study.report_compare import fmt_interval

    return fmt_interval(*stats.t_interval(values, 0.0, 1.0), scale)


def build_tables(
    rows: list[dict[str, Any]],
    base: dict[str, Any] | None,
    metrics: list[str],
    metric: str,
    last_n: int = LAST_N,
    pass_ks: dict[str, dict[int, tuple[float, float, float]]] | None = None,
):
    """(main header, main rows, signal header, signal rows) as strings. pass_ks: config -> {k: t interval} of
    Pass@k from eval_outcomes.jsonl (replaces the eval line's single pass@k column when given)."""
    label = metric.removeprefix("eval/") if metric else ""
    passk = next((m for m in metrics if "/pass@" in m and m.split("/")[1] == metric.split("/")[1]), "")
    ks = sorted(set.intersection(*[set(v) for v in pass_ks.values()])) if pass_ks else []
    head = ["config", "seeds", "G", "prompts/mb", "lr", "advantage"]
    if metric:
        head += [f"final {label} (%)", f"mean of last {last_n} evals (%)", "IQM of final over seeds (%)"]
    if ks:
        head += [f"final pass@{k} (%)" for k in ks]
    elif passk:
        head += [f"final {passk.removeprefix('eval/')} (%)"]
    head += ["rollouts", "tokens", "opt. steps", "train time (s)", "rollout s", "learner s", "eval s"]
    if base is not None:
        head += [f"vs {base['config']}"]
    main = []
    for r in rows:
        line = [
            r["config"],
            str(r["seeds"]),
            str(r["G"]),
            str(r["prompts_per_minibatch"]),
            f"{r['lr']:g}",
            str(r["advantage"]),
        ]
        if metric:
            finals = r["values"][f"final {metric}"]
            line += [fmt_clipped(finals), fmt_clipped(r["values"][f"last {metric}"])]
            line += [f"{100 * stats.iqm(finals):.1f}" if finals else "-"]
        if ks:
            from two_grpo.study.report_compare import fmt_interval

            line += [fmt_interval(*pass_ks[r["config"]][k], 100) for k in ks]  # type: ignore[index]
        elif passk:
            line += [fmt_clipped(r["values"][f"final {passk}"])]
        line += [fmt_count(r["rollouts"]), fmt_count(r["tokens"]), fmt_count(r["steps"])]
        line += [fmt(r["train_s"]), fmt(r["rollout_s"]), fmt(r["learner_s"]), fmt(r["eval_s"])]
        if base is not None:
            line += ["baseline" if r is base else ratio_sentence(ratios(r, base, metric), label or "metric")]
        main.append(line)
    sig_head = [
        "config",
        "G",
        "zero-var groups observed",
        "predicted from batch p",
        "predicted from per-prompt p",
        "rollouts with no gradient",
        "mean abs adv (nonzero)",
        "mean abs adv (all)",
    ]
    sig = [
        [
            r["config"],
            str(r["G"]),
            fmt(r["zero_var_obs"], 100) + "%",
            fmt(r["zero_var_pred_batch_p"], 100) + "%",
            (fmt(r["zero_var_pred_prompts"], 100) + "%") if not math.isnan(r["zero_var_pred_prompts"][0]) else "-",
            fmt(r["zero_adv_frac"], 100) + "%",
            fmt(r["adv_abs_nonzero"], 1, 3),
            fmt(r["adv_abs"], 1, 3),
        ]
        for r in rows
    ]
    return head, main, sig_head, sig


def markdown_table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def write_csv(path: Path, rows: list[dict[str, Any]], base: dict[str, Any] | None, metric: str) -> None:
    keys = [k for k in rows[0] if isinstance(rows[0][k], tuple)]
    labels = ["config", "config_id", "seeds", "G", "prompts_per_minibatch", "lr", "advantage"]
    extra = ["rollouts_pct", "tokens_pct", "steps_pct", "time_pct", "metric_pct"] if base is not None else []
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        names = [k.replace("best ", "best (optimistic, max over evals) ", 1) for k in keys]
        w.writerow(labels + [c for k in names for c in (k, f"{k} ci95")] + [f"{e} vs baseline" for e in extra])
        for r in rows:
            rat = ratios(r, base, metric) if base is not None else {}
            w.writerow([r[k] for k in labels] + [v for k in keys for v in r[k]] + [rat[e] for e in extra])


def plan_of(paths: list[Path]) -> dict[str, Any]:
    """The first sweep dir's plan.json (preset, budget, claim, parallel), or {}."""
    import json

    for p in paths:
        if (p / "plan.json").is_file():
            return json.loads((p / "plan.json").read_text())
    return {}


def cmd_report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="two-grpo report", description=__doc__.split("\n\n")[1])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--baseline", default=None, help="configuration name the comparisons are against")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <first sweep dir>/report)")
    parser.add_argument("--metric", default=None, help="eval key to rank by (default eval/avg/mean@k or the first)")
    parser.add_argument(
        "--min-effect", type=float, default=None, help=f"report.min_effect, 0..1 (default the preset's or {MIN_EFFECT})"
    )
    parser.add_argument("--last-n", type=int, default=LAST_N, help=f"evals in 'mean of last N' (default {LAST_N})")
    parser.add_argument(
        "--target", type=float, default=TARGET_SHARE, help="target = this share of the baseline's final"
    )
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    try:
        configs, plan_baseline, unfinished = collect(args.paths)
        if not configs:
            raise ConfigError(f"no finished runs (summary.json) under {' '.join(map(str, args.paths))}")
        metrics = eval_metric_names(configs)
        metric = args.metric or primary_metric(configs)
        if metric and metric not in metrics:
            raise ConfigError(f"--metric {metric}: not in every run's eval.jsonl; choose one of: {', '.join(metrics)}")
        baseline = args.baseline or plan_baseline
        names = [c.name for c in configs]
        if baseline and baseline not in names:
            raise ConfigError(f"--baseline {baseline}: no such configuration; choose one of: {', '.join(names)}")
        plan = plan_of(args.paths)
        min_effect = args.min_effect if args.min_effect is not None else float(plan.get("min_effect") or MIN_EFFECT)
        if not 0 < min_effect < 1 or args.last_n < 1 or not 0 < args.target <= 1:
            raise ConfigError("--min-effect must be in (0, 1), --last-n >= 1, --target in (0, 1]")
    except ConfigError as exc:
        print(f"two-grpo: error: {exc}", file=sys.stderr)
        return 2
    from two_grpo.study import report_compare as rc

    rows = aggregate(configs, metrics, args.last_n)
    base = next((r for r in rows if r["config"] == baseline), None)
    base_cfg = next((c for c in configs if c.name == baseline), None)
    bench = rc.metric_benchmark(metric)
    pass_ks = {c.name: rc.pass_at_ks_of(c, bench) for c in configs} if metric else {}
    pass_ks = pass_ks if pass_ks and all(pass_ks.values()) else {}
    head, main, sig_head, sig = build_tables(rows, base, metrics, metric, args.last_n, pass_ks)
    by_name = {c.name: c for c in configs}
    pairs = [(by_name[a], by_name[b]) for a, b in plan.get("comparisons") or [] if a in by_name and b in by_name]
    if metric and (pairs or base_cfg):
        end_label = "at equal epochs" if plan.get("budget") == "epochs" else "at the end of training"
        verdicts, notes = rc.compare_all(
            configs, base_cfg, metric, min_effect, pairs=pairs or None, end_label=end_label
        )
    else:
        verdicts, notes = [], []
    first = args.paths[0]
    out = args.out or (
        first / "report" if (first / "plan.json").is_file() else Path("reports") / time.strftime("%Y%m%d-%H%M%S")
    )
    out.mkdir(parents=True, exist_ok=True)
    plots = (
        []
        if args.no_plots
        else __import__("two_grpo.study.report_plots", fromlist=["plot_all"]).plot_all(configs, metric, out)
    )
    md = [f"# two-grpo report: {', '.join(map(str, args.paths))}", ""]
    if plan.get("description"):
        md += [f"Preset `{plan.get('preset')}`: {plan['description']}", ""]
    if plan.get("claim"):
        md += [f"Claim tested: {plan['claim']} Budget: {plan.get('budget', 'as each member sets it')}.", ""]
    if int(plan.get("parallel", 1) or 1) > 1:
        md += [
            f"**Wall-clock caveat:** members ran {plan['parallel']} at a time on shared cores, so their times "
            "(and time-to-target) are inflated and not comparable to one-at-a-time runs.",
            "",
        ]
    md += ["## Verdicts", ""]
    if verdicts:
        md += [
            f"Metric `{metric}`, per-prompt mean reward paired over shared seeds and eval prompts; 95% seed-bootstrap "
            f"interval (expanded percentile; stats.py), Holm over the {len(verdicts)} comparisons of this report; "
            f"min effect ±{100 * min_effect:g} pts.",
            "",
        ]
        md += [f"- {v.line(min_effect)}" for v in verdicts]
        md += ["", "| comparison | diff (pts) | 95% CI | ratio to baseline | P(improvement) | Holm p | seed SD (pts) |"]
        md += ["|---|---|---|---|---|---|---|"]
        for v in verdicts:
            c = v.comparison
            md.append(
                f"| {v.label} | {100 * c.diff:+.1f} | [{100 * c.lower:+.1f}, {100 * c.upper:+.1f}] | "
                f"{c.ratio:.3f} [{c.ratio_lower:.3f}, {c.ratio_upper:.3f}] | "
                f"{c.prob_improvement:.2f} [{c.poi_lower:.2f}, {c.poi_upper:.2f}] | {v.holm_p:.3g} | "
                f"{100 * c.seed_sd:.1f} |"
            )
    else:
        md += ["No paired comparison: it needs a baseline and eval_outcomes.jsonl in the runs (older runs lack it)."]
    md += [f"- note: {n}" for n in notes]
    md += [
        "",
        "## Configurations",
        "",
        f"Metric `{metric or '(no eval)'}`: final = the last eval; mean of last {args.last_n} evals; both mean "
        "[exact 95% t interval over seeds, clipped to 0..100%]. IQM = interquartile mean over seeds. Pass@k "
        "(unbiased, from eval_outcomes.jsonl) for k = 1..samples. Train time = wall-clock minus eval. Ratios: "
        "share of the baseline's mean. (The max over evals, `best`, is selected on the eval set and is only in "
        "report.csv, labelled optimistic.)",
        "",
        markdown_table(head, main),
    ]
    if metric and len(configs) > 1:
        eb_head, eb_rows, r_min, target = rc.equal_budget_rows(configs, base_cfg, metric, args.target)
        md += [
            "",
            "## Equal budgets",
            "",
            f"Each seed's eval curve interpolated linearly at {r_min:,.0f} rollouts (the smallest member's total); "
            f"target = {100 * args.target:g}% of the baseline's final ({100 * target:.1f}%), reached where the "
            "interpolated curve first crosses it; mean [t interval] over the seeds that reached it.",
            "",
            markdown_table(eb_head, eb_rows),
        ]
    profile = rc.difficulty_profile(configs)
    if profile:
        bins = " ".join(f"{10 * i}-{10 * i + 10}%: {n}" for i, n in enumerate(profile["hist"]))
        md += [
            "",
            "## Difficulty profile at the start",
            "",
            f"{profile['prompts']} training prompts ({profile['path']}): {100 * profile['spread']:.0f}% have a solve "
            f"rate in (5%, 95%). Histogram of solve rates: {bins}.",
        ]
    md += [
        "",
        "## Signal accounting",
        "",
        "Zero-variance groups carry no gradient. Predicted from batch p: p^G + (1-p)^G with the rollout batch's "
        "solve rate (all prompts equally hard); predicted from per-prompt p: the same from each held-out prompt's "
        "own solve rate (eval samples, unbiased). Observed above the batch-p prediction means prompts differ in "
        "difficulty.",
        "",
        markdown_table(sig_head, sig),
    ]
    from two_grpo.study import report_argument as ra

    noise_md, noise_rows = ra.noise_section(configs)
    md += noise_md + ra.resample_section(configs, base_cfg, pairs) + ra.probe_section(configs, args.paths)
    noise_plot = None if args.no_plots or not noise_rows else ra.plot_noise(noise_rows, out)
    plots += [noise_plot] if noise_plot is not None else []
    md += ["", *[f"![{p.stem}]({p.name})" for p in plots]]
    if unfinished:
        md += ["", f"Unfinished (not in the table): {', '.join(str(u) for u in unfinished)}"]
    (out / "report.md").write_text("\n".join(md) + "\n")
    write_csv(out / "report.csv", rows, base, metric)
    print_terminal(head, main, sig_head, sig, unfinished)
    for v in verdicts:
        print(v.line(min_effect))
    if noise_rows:
        print(ra.noise_verdict(noise_rows))
    for n in notes:
        print(f"note: {n}")
    print(f"written: {out / 'report.md'}, {out / 'report.csv'}" + "".join(f", {p}" for p in plots))
    return 0


def print_terminal(head, main, sig_head, sig, unfinished) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=max(Console().width, 200))
    for title, h, rows in (("configurations", head, main), ("signal accounting", sig_head, sig)):
        t = Table(title=title)
        for c in h:
            t.add_column(c, overflow="fold")
        for r in rows:
            t.add_row(*r)
        console.print(t)
    if unfinished:
        console.print(f"unfinished, not in the table: {len(unfinished)} run(s)")


__all__ = ["cmd_report", "PHASES"]
