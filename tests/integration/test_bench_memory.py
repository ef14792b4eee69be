"""scripts/bench_memory.py runs at CI size and reports self-consistent numbers: every variant computes the same
loss, entropy and gradient, and the chunked steps peak below the full-logits one. Not a timing: the 4x drop at
the paper's shape is `make bench-memory`. Run: pytest -m slow tests/integration/test_bench_memory.py"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_bench_memory_quick_is_self_consistent(tmp_path):
    out = tmp_path / "mem.json"
    p = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_memory.py"), "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert "peak RSS of one learner step" in p.stdout
    legacy, *chunked = json.loads(out.read_text())["rows"]
    assert legacy["variant"] == "legacy" and [r["chunk"] for r in chunked] == [32, 64, 128]
    for r in chunked:
        assert r["step_mb"] < legacy["step_mb"], r  # after < before
        assert r["peak_rss_mb"] >= r["before_mb"] + r["step_mb"] - 1
        assert r["loss"] == pytest.approx(legacy["loss"], abs=1e-5)  # the same step, computed another way
        assert r["entropy_sum"] == pytest.approx(legacy["entropy_sum"], rel=1e-5)
        assert r["grad_abs_sum"] == pytest.approx(legacy["grad_abs_sum"], rel=1e-4)
