"""The README's first command learns: `two-grpo train` with no overrides, on builtin:tiny (built on first use).
Run: pytest -m slow tests/integration/test_learns.py"""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def test_default_run_improves_solve_rate_by_15_points(tmp_path):
    run_dir = tmp_path / "default"
    env = {**os.environ}
    p = subprocess.run(
        [sys.executable, "-m", "two_grpo.cli", "train", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    n = len(rows)
    first = sum(r["rollout/solve_rate"] for r in rows[: n // 10]) / (n // 10)
    last = sum(r["rollout/solve_rate"] for r in rows[n - n // 5 :]) / (n // 5)
    assert last - first >= 0.15, (first, last)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["eval/toy_arith/mean@1 (end)"] > summary["eval/toy_arith/mean@1 (start)"] + 0.15
