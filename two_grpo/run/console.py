"""Terminal output: a rich progress bar (or one plain line every N steps when not a terminal) and the
closing summary table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

console = Console(highlight=False)


def fmt_duration(seconds: float) -> str:
    """1h02m, 3m05s, 42s."""
    seconds = max(int(seconds), 0)
    h, rest = divmod(seconds, 3600)
    if h:
        return f"{h}h{rest // 60:02d}m"
    return f"{rest // 60}m{rest % 60:02d}s" if rest >= 60 else f"{rest}s"


class ProgressView:
    def __init__(self, total_steps: int, enabled: bool, print_every: int):
        import time

        self.print_every = max(print_every, 1)
        self.total = total_steps
        self.t0, self.first_step = time.time(), None  # ETA from the steps this process ran (a resume starts later)
        self.bar: Progress | None = None
        if enabled and console.is_terminal:
            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=console,
            )
            self.task = self.bar.add_task("train", total=total_steps if total_steps > 0 else None, info="")
            self.bar.start()

    def update(self, m: dict[str, Any]) -> None:
        info = (
            f"solve {m['rollout/solve_rate']:.2f}  reward {m['rollout/reward_mean']:.3f}  "
            f"zero-var {m['rollout/zero_var_group_frac']:.2f}  len {m['rollout/response_tokens_mean']:.1f}  "
            f"{m['time/step']:.2f}s/step"
        )
        if self.bar is not None:
            self.bar.update(self.task, completed=m["step"], info=info)
        elif m["step"] % self.print_every == 0 or m["step"] == 1 or m["step"] == self.total:
            console.print(f"{self.progress(m['step'])}  {info}", soft_wrap=True)

    def progress(self, step: int, now: float | None = None) -> str:
        """`step 10/150  elapsed 12s  ETA 2m48s` (total and ETA `?` when only wall-clock or tokens bound the run)."""
        import time

        now = time.time() if now is None else now
        if self.first_step is None:
            self.first_step = step - 1
        elapsed, done = now - self.t0, step - self.first_step
        total = str(self.total) if self.total > 0 else "?"
        eta = fmt_duration(elapsed / done * (self.total - step)) if self.total > 0 and done > 0 else "?"
        return f"step {step:>5}/{total}  elapsed {fmt_duration(elapsed)}  ETA {eta}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def print_header(run_dir: str, model: str, derived: dict[str, Any], cfg: Any) -> None:
    """Key=value pairs, one line each: never wrapped inside a pair, whatever the terminal width (soft_wrap)."""
    console.print(f"[bold]two-grpo train[/]  run dir: {run_dir}", soft_wrap=True)
    console.print(
        f"model={model}  task={cfg.task.name}  group_size={cfg.group_size}  lr={cfg.lr:g}  "
        f"advantage={cfg.algo.advantage}  loss_agg={cfg.algo.loss_agg}",
        soft_wrap=True,
    )
    console.print("derived: " + "  ".join(f"{k}={v}" for k, v in derived.items()), soft_wrap=True)


def print_engine(info: dict[str, Any]) -> None:
    """One line: the rollout engine that runs (auto resolved) and its start-up time, apart from step times."""
    parts = [
        f"{k.removeprefix('time/engine_').removesuffix('_s')} {v:.1f}s"
        for k, v in info.items()
        if k.startswith("time/")
    ]
    console.print(
        f"rollout engine {info['rollout_backend']} (rollout.backend={info['rollout_backend_requested']})  "
        + "  ".join(parts),
        soft_wrap=True,
    )


def print_summary(s: dict[str, Any]) -> None:
    t = Table(title="run summary", show_header=True)
    t.add_column("metric")
    t.add_column("value", justify="right")
    for key, value in s.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        t.add_row(key, str(value))
    console.print(t)
