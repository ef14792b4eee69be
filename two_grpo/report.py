"""`two-grpo report <SWEEP_DIR | RUN_DIR | FOLDER_OF_RUNS ...> [--baseline NAME] [--out DIR] [--metric KEY]`

One row per configuration (runs that differ only in seed): final and best eval metric as mean ± 95% CI over
seeds, rollouts, tokens, optimizer steps, wall-clock per phase and the share of the baseline's budget in the
paper's terms; then signal accounting (observed zero-variance group fraction vs the fractions predicted from
the batch solve rate and from per-prompt solve rates, rollouts with no gradient, advantage scale).
Writes report.md, report.csv and PNG plots into --out (default <sweep dir>/report).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path
from typing import Any

from two_grpo.config import ConfigError
from two_grpo.report_data import PHASES, aggregate, collect, eval_metric_names, primary_metric, ratio_sentence, ratios


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


def build_tables(rows: list[dict[str, Any]], base: dict[str, Any] | None, metrics: list[str], metric: str):
    """(main header, main rows, signal header, signal rows) as strings."""
    label = metric.removeprefix("eval/") if metric else ""
    passk = next((m for m in metrics if "/pass@" in m and m.split("/")[1] == metric.split("/")[1]), "")
    head = ["config", "seeds", "G", "prompts/mb", "lr", "advantage"]
    if metric:
        head += [f"final {label} (%)", f"best {label} (%)"]
    if passk:
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
            line += [fmt(r[f"final {metric}"], 100), fmt(r[f"best {metric}"], 100)]
        if passk:
            line += [fmt(r[f"final {passk}"], 100)]
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
        w.writerow(labels + [c for k in keys for c in (k, f"{k} ci95")] + [f"{e} vs baseline" for e in extra])
        for r in rows:
            rat = ratios(r, base, metric) if base is not None else {}
            w.writerow([r[k] for k in labels] + [v for k in keys for v in r[k]] + [rat[e] for e in extra])


def cmd_report(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="two-grpo report", description=__doc__.split("\n\n")[1])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--baseline", default=None, help="configuration name the ratios are against")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default <first sweep dir>/report)")
    parser.add_argument("--metric", default=None, help="eval key to rank by (default eval/avg/mean@k or the first)")
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
    except ConfigError as exc:
        print(f"two-grpo: error: {exc}", file=sys.stderr)
        return 2
    rows = aggregate(configs, metrics)
    base = next((r for r in rows if r["config"] == baseline), None)
    head, main, sig_head, sig = build_tables(rows, base, metrics, metric)
    first = args.paths[0]
    out = args.out or (
        first / "report" if (first / "plan.json").is_file() else Path("reports") / time.strftime("%Y%m%d-%H%M%S")
    )
    out.mkdir(parents=True, exist_ok=True)
    plots = (
        []
        if args.no_plots
        else __import__("two_grpo.report_plots", fromlist=["plot_all"]).plot_all(configs, metric, out)
    )
    md = [
        f"# two-grpo report: {', '.join(map(str, args.paths))}",
        "",
        f"Mean ± 95% t-interval over seeds. Metric: `{metric or '(no eval)'}`; final = last eval, best = best eval "
        "after step 0. Train time = wall-clock minus eval. Ratios: share of the baseline's mean.",
        "",
        markdown_table(head, main),
        "",
        "## Signal accounting",
        "",
        "Zero-variance groups carry no gradient. Predicted from batch p: p^G + (1-p)^G with the rollout batch's "
        "solve rate (all prompts equally hard); predicted from per-prompt p: the same from each held-out prompt's "
        "own solve rate (eval samples, unbiased). Observed above the batch-p prediction means prompts differ in "
        "difficulty.",
        "",
        markdown_table(sig_head, sig),
        "",
        *[f"![{p.stem}]({p.name})" for p in plots],
    ]
    if unfinished:
        md += ["", f"Unfinished (not in the table): {', '.join(str(u) for u in unfinished)}"]
    (out / "report.md").write_text("\n".join(md) + "\n")
    write_csv(out / "report.csv", rows, base, metric)
    print_terminal(head, main, sig_head, sig, unfinished)
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
