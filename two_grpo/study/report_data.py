"""Read finished runs (summary.json, metrics.jsonl, eval.jsonl, config.yaml) and aggregate them per
configuration over seeds: mean and 95% t-interval half-width. Pure Python; plotting is in report_plots.py."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from two_grpo.config.schema import ConfigError

LAST_N = 3  # "last N": the mean of a run's last N evals (less eval noise than the final one alone)
PHASES = ("rollout", "reward", "logprob", "learner", "sync", "eval")
DROP_FROM_LABEL = ("seed=", "run_id=", "hydra.")


def mean_ci95(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% t-interval of the mean); half-width is nan for a single value."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    m = sum(values) / n
    if n == 1:
        return m, math.nan
    from two_grpo.study.stats import t_quantile

    return m, t_quantile(n - 1) * statistics.stdev(values) / math.sqrt(n)


@dataclass
class Run:
    run_dir: Path
    config_id: str
    name: str
    seed: int
    summary: dict[str, Any]
    steps: list[dict[str, Any]]
    evals: list[dict[str, Any]]
    config: dict[str, Any]
    outcomes: list[dict[str, Any]] = field(default_factory=list)  # eval_outcomes.jsonl: one line per eval prompt

    def batches(self) -> list[dict[str, Any]]:
        """One metrics line per rollout batch (the rollout/* keys repeat on each of its optimizer steps)."""
        seen, out = set(), []
        for row in self.steps:
            key = row.get("rollout_batch", row["step"])
            if key not in seen:
                seen.add(key)
                out.append(row)
        return out


@dataclass
class Config:
    config_id: str
    name: str
    runs: list[Run] = field(default_factory=list)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_run(run_dir: Path, config_id: str = "", name: str = "", seed: int | None = None) -> Run | None:
    """A finished run (summary.json present), or None."""
    import yaml

    if not (run_dir / "summary.json").is_file():
        return None
    config = yaml.safe_load((run_dir / "config.yaml").read_text()) if (run_dir / "config.yaml").is_file() else {}
    if not config_id:
        lines = (run_dir / "overrides.txt").read_text().splitlines() if (run_dir / "overrides.txt").is_file() else []
        label = " ".join(o for o in lines if o and not o.startswith(DROP_FROM_LABEL)) or "(defaults)"
        config_id = name = label
    return Run(
        run_dir=run_dir,
        config_id=config_id,
        name=name or config_id,
        seed=int(config.get("seed", 0) if seed is None else seed),
        summary=json.loads((run_dir / "summary.json").read_text()),
        steps=_read_jsonl(run_dir / "metrics.jsonl"),
        evals=_read_jsonl(run_dir / "eval.jsonl"),
        config=config,
        outcomes=_read_jsonl(run_dir / "eval_outcomes.jsonl"),
    )


def collect(paths: list[Path]) -> tuple[list[Config], str, list[Path]]:
    """(configurations in plan order, baseline config name, unfinished run dirs) from sweep dirs or run dirs."""
    configs: dict[str, Config] = {}
    baseline, unfinished = "", []

    def add(run_dir: Path, **kw: Any) -> None:
        run = load_run(run_dir, **kw)
        if run is None:
            unfinished.append(run_dir)
            return
        configs.setdefault(run.config_id, Config(run.config_id, run.name)).runs.append(run)

    for p in paths:
        if (p / "plan.json").is_file():
            plan = json.loads((p / "plan.json").read_text())
            baseline = baseline or plan.get("baseline", "")
            for m in plan["members"]:
                local = p / m["run_id"]  # the sweep dir may have moved since the plan was written
                add(
                    local if local.is_dir() else Path(m["run_dir"]),
                    config_id=m["config_id"],
                    name=m["name"],
                    seed=m["seed"],
                )
        elif (p / "metrics.jsonl").is_file():
            add(p)
        elif p.is_dir() and any(c.joinpath("metrics.jsonl").is_file() for c in p.iterdir() if c.is_dir()):
            for c in sorted(p.iterdir()):
                if (c / "metrics.jsonl").is_file():
                    add(c)
        else:
            raise ConfigError(f"{p}: not a sweep dir (plan.json), a run dir (metrics.jsonl) or a folder of runs")
    return list(configs.values()), baseline, unfinished


def eval_metric_names(configs: list[Config]) -> list[str]:
    """`eval/<bench>/<metric>` keys (mean@k, pass@k) present in every run's eval lines, avg first."""
    keys: set[str] | None = None
    for c in configs:
        for r in c.runs:
            ks = {k for e in r.evals for k in e if k.startswith("eval/") and ("/mean@" in k or "/pass@" in k)}
            keys = ks if keys is None else keys & ks
    return sorted(keys or (), key=lambda k: (not k.startswith("eval/avg/"), "/pass@" in k, k))


def primary_metric(configs: list[Config]) -> str:
    names = eval_metric_names(configs)
    return next((n for n in names if "/mean@" in n), "")


def run_stats(run: Run, metrics: list[str], last_n: int = LAST_N) -> dict[str, float]:
    """Per-run numbers that the report averages over seeds."""
    s = run.summary
    g = int(run.config.get("group_size", 0))
    out: dict[str, float] = {
        "rollouts": s.get("rollouts", math.nan),
        "tokens": s.get("tokens_generated", math.nan),
        "steps": s.get("optimizer_steps", math.nan),
        "wall_s": s.get("wallclock_s", math.nan),
    }
    for p in PHASES:
        out[f"{p}_s"] = s.get(f"time/{p}_total_s", 0.0)
    out["train_s"] = out["wall_s"] - out["eval_s"]
    trained = [e for e in run.evals if e.get("budget/optimizer_steps", 0) > 0] or run.evals
    for m in metrics:
        vals = [e[m] for e in trained if m in e]
        out[f"final {m}"] = run.evals[-1].get(m, math.nan) if run.evals else math.nan
        out[f"best {m}"] = max(vals) if vals else math.nan  # optimistic: selected on the eval set
        out[f"last {m}"] = sum(vals[-last_n:]) / len(vals[-last_n:]) if vals else math.nan
        out[f"start {m}"] = run.evals[0].get(m, math.nan) if run.evals else math.nan
    batches = run.batches()

    def avg(key: str, skip_zero: bool = False) -> float:
        vals = [b[key] for b in batches if key in b and not (skip_zero and b[key] == 0.0)]
        return sum(vals) / len(vals) if vals else math.nan

    out["zero_var_obs"] = avg("rollout/zero_var_group_frac")
    out["zero_var_pred_batch_p"] = avg("rollout/zero_var_pred_batch_p")
    out["zero_adv_frac"] = avg("rollout/zero_adv_frac")
    out["adv_abs_nonzero"] = avg("adv/abs_mean_nonzero", skip_zero=True)  # 0 = a batch with no gradient at all
    out["adv_abs"] = avg("adv/abs_mean")
    pred_keys = [k for e in run.evals for k in e if k.endswith(f"/zero_var_pred_g{g}")]
    if pred_keys:
        k = pred_keys[0]
        vals = [e[k] for e in run.evals if k in e]
        out["zero_var_pred_prompts"] = sum(vals) / len(vals)
    else:
        out["zero_var_pred_prompts"] = math.nan
    return out


def aggregate(configs: list[Config], metrics: list[str], last_n: int = LAST_N) -> list[dict[str, Any]]:
    """One row per configuration: every run_stats key as (mean, ci95 half-width), plus labels; `values` holds
    each key's per-seed values (for clipped intervals and IQM)."""
    rows = []
    for c in configs:
        stats = [run_stats(r, metrics, last_n) for r in c.runs]
        cfg = c.runs[0].config
        row: dict[str, Any] = {
            "config": c.name,
            "config_id": c.config_id,
            "seeds": len(c.runs),
            "G": cfg.get("group_size"),
            "prompts_per_minibatch": cfg.get("prompts_per_minibatch"),
            "lr": cfg.get("lr"),
            "advantage": (cfg.get("algo") or {}).get("advantage"),
        }
        row["values"] = {}
        for key in stats[0]:
            vals = [s[key] for s in stats if not math.isnan(s[key])]
            row[key] = mean_ci95(vals) if vals else (math.nan, math.nan)
            row["values"][key] = vals
        rows.append(row)
    return rows


def pct(a: float, b: float) -> float:
    return 100.0 * a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def ratios(row: dict[str, Any], base: dict[str, Any], metric: str) -> dict[str, float]:
    """Shares of the baseline's mean: rollouts, tokens, optimizer steps, training time, final metric."""
    return {
        "rollouts_pct": pct(row["rollouts"][0], base["rollouts"][0]),
        "tokens_pct": pct(row["tokens"][0], base["tokens"][0]),
        "steps_pct": pct(row["steps"][0], base["steps"][0]),
        "time_pct": pct(row["train_s"][0], base["train_s"][0]),
        "metric_pct": pct(row[f"final {metric}"][0], base[f"final {metric}"][0]) if metric else math.nan,
    }


def ratio_sentence(r: dict[str, float], metric_label: str) -> str:
    """The paper's phrasing: '12.5% of rollouts, 23% of time, 97% of Mean@32'."""

    def f(v: float) -> str:
        return "?" if math.isnan(v) else (f"{v:.1f}%" if v < 20 else f"{v:.0f}%")

    return f"{f(r['rollouts_pct'])} of rollouts, {f(r['time_pct'])} of time, {f(r['metric_pct'])} of {metric_label}"
