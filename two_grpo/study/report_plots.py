"""PNG plots of a report: eval metric against rollouts, generated tokens, training wall-clock and optimizer steps
on a common grid (each seed's curve interpolated linearly onto it; one line per configuration, the mean over
seeds with a 95% seed-bootstrap band, drawn where every seed has data), training reward curves and the
zero-variance signal. matplotlib is imported here only (Agg backend, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from two_grpo.study.report_data import Config

GRID_POINTS = 60
X_AXES = {
    "rollouts": ("budget/rollouts_total", "rollouts generated"),
    "tokens": ("budget/tokens_generated_total", "generated tokens"),
    "wallclock": ("time/train_wallclock_s", "training wall-clock [s] (eval excluded)"),
    "steps": ("budget/optimizer_steps", "optimizer steps"),
}


def _aligned(series: list[list[tuple[float, float]]]) -> tuple[list[float], list[float], list[float], list[float]]:
    """Seeds' (x, y) series cut to the shortest, by index -> (x mean, y mean, y min, y max)."""
    n = min(len(s) for s in series)
    xs, ys, lo, hi = [], [], [], []
    for i in range(n):
        pts = [s[i] for s in series]
        xs.append(sum(p[0] for p in pts) / len(pts))
        yv = [p[1] for p in pts]
        ys.append(sum(yv) / len(yv))
        lo.append(min(yv))
        hi.append(max(yv))
    return xs, ys, lo, hi


def _smooth(values: list[float], window: int) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v
        if i >= window:
            acc -= values[i - window]
        out.append(acc / min(i + 1, window))
    return out


def _line(ax: Any, series: list[list[tuple[float, float]]], label: str, color: Any) -> None:
    series = [s for s in series if s]
    if not series:
        return
    xs, ys, lo, hi = _aligned(series)
    n = len(series)
    ax.plot(xs, ys, marker="o" if len(xs) < 15 else None, ms=3, lw=1.8, color=color, label=f"{label} (n={n})")
    if n > 1:
        ax.fill_between(xs, lo, hi, color=color, alpha=0.18, lw=0)


def _grid_line(ax: Any, series: list[list[tuple[float, float]]], grid: Any, label: str, color: Any) -> None:
    """Seeds' (x, y) eval curves interpolated onto grid; mean and 95% seed-bootstrap band where all seeds exist."""
    import numpy as np

    from two_grpo.study.stats import band, interp_curve

    series = [sorted(s) for s in series if s]
    if not series:
        return
    curves = np.array([interp_curve([p[0] for p in s], [p[1] for p in s], grid) for s in series])  # [S, X]
    keep = ~np.isnan(curves).any(0)
    if not keep.any():
        return
    mean, lo, hi = band(curves[:, keep])
    xs = np.asarray(grid)[keep]
    ax.plot(xs, mean, lw=1.8, color=color, label=f"{label} (n={len(series)})")
    if len(series) > 1:
        ax.fill_between(xs, lo, hi, color=color, alpha=0.18, lw=0)


def plot_all(configs: list[Config], metric: str, out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = plt.get_cmap("tab10")
    written: list[Path] = []
    short = metric.removeprefix("eval/") if metric else ""
    if metric:
        import numpy as np

        for name, (xkey, xlabel) in X_AXES.items():
            fig, ax = plt.subplots(figsize=(7.5, 4.6))
            all_series = {
                c.name: [[(e[xkey], e[metric]) for e in r.evals if xkey in e and metric in e] for r in c.runs]
                for c in configs
            }
            x_max = max((p[0] for ss in all_series.values() for s in ss for p in s), default=0.0)
            if not any(s for ss in all_series.values() for s in ss):  # the runs did not log this axis
                plt.close(fig)
                continue
            grid = np.linspace(0.0, x_max, GRID_POINTS) if x_max > 0 else np.zeros(1)
            for i, c in enumerate(configs):
                series = all_series[c.name]
                grid_c = np.union1d(grid, [s[-1][0] for s in series if s])  # every seed's own end too
                _grid_line(ax, series, grid_c, c.name, colors(i % 10))
            ax.set_xlabel(xlabel)
            ax.set_ylabel(short)
            ax.set_title(
                f"{short} vs {xlabel.split(' [')[0]}  (common grid; line: seed mean, band: 95% seed bootstrap)",
                fontsize=9,
            )
            ax.grid(alpha=0.3)
            if name == "rollouts" and ax.get_xlim()[1] > 0:
                ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 4))
            ax.legend(fontsize=8, loc="best")
            fig.tight_layout()
            path = out_dir / f"eval_vs_{name}.png"
            fig.savefig(path, dpi=120)
            plt.close(fig)
            written.append(path)

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for i, c in enumerate(configs):
        reward, zero = [], []
        for r in c.runs:
            b = r.batches()
            window = max(1, len(b) // 12)
            xs = [row["budget/rollouts_total"] for row in b]
            reward.append(list(zip(xs, _smooth([row["rollout/reward_mean"] for row in b], window))))
            zero.append(list(zip(xs, _smooth([row["rollout/zero_var_group_frac"] for row in b], window))))
        _line(axes[0], reward, c.name, colors(i % 10))
        _line(axes[1], zero, c.name, colors(i % 10))
    axes[0].set_title("training reward (rollout batch mean, smoothed)", fontsize=10)
    axes[0].set_ylabel("reward")
    axes[1].set_title("zero-variance groups (no gradient), observed", fontsize=10)
    axes[1].set_ylabel("fraction of groups")
    for ax in axes:
        ax.set_xlabel("rollouts generated")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "train_reward.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
    return written
