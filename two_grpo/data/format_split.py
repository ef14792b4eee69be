"""Format vs correctness: how many completions are well formed (the task's `format_ok`), and how many of those
are correct (reward 1.0). A task without `format_ok` gives no split."""

from __future__ import annotations

from typing import Any


def format_counts(task: Any, texts: list[str], rewards: list[float]) -> tuple[int, int, int] | None:
    """(completions, well formed, well formed and correct), or None when the task has no `format_ok`."""
    check = getattr(task, "format_ok", None)
    if check is None:
        return None
    ok = [bool(check(t)) for t in texts]
    return len(texts), sum(ok), sum(o and r == 1.0 for o, r in zip(ok, rewards))


def format_metrics(counts: tuple[float, float, float] | None, prefix: str, frac_name: str) -> dict[str, float]:
    """`<prefix>/<frac_name>` (share well formed) and `<prefix>/correct_given_format` (0.0 when none is)."""
    if counts is None:
        return {}
    n, ok, ok_correct = counts
    return {f"{prefix}/{frac_name}": ok / max(n, 1), f"{prefix}/correct_given_format": ok_correct / ok if ok else 0.0}
