"""Step time and peak memory: 1-rank torch learner vs N-rank DeepSpeed ZeRO-2 / ZeRO-3, same config, one run.

    python scripts/bench_multirank.py --ranks 2 --steps 20 [extra `two-grpo train` overrides]

Runs `two-grpo train` (via torchrun for the DeepSpeed rows) one after another, then prints the median of
`time/step` over the steps after the first (warm-up), the median `time/learner`, and the peak memory per rank
from summary.json. Compare rows of one invocation only (the machine's load changes between invocations).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run(label: str, launcher: list[str], overrides: list[str], out: Path) -> dict:
    run_dir = out / label
    cmd = [*launcher, "-m", "two_grpo.cli", "train", f"hydra.run.dir={run_dir}", "logger.progress=false", *overrides]
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{label} failed:\n{p.stderr[-3000:]}")
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((run_dir / "summary.json").read_text())
    steady = rows[1:] or rows
    return {
        "label": label,
        "step_s": statistics.median(r["time/step"] for r in steady),
        "learner_s": statistics.median(r["time/learner"] for r in steady),
        "peak_gb_per_rank": summary.get("memory/peak_gb_per_rank", [summary.get("memory/peak_gb")]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--steps", type=int, default=20)
    args, extra = ap.parse_known_args()
    base = [f"budget.max_steps={args.steps}", "eval.prompts=0", "logger.dump_rollouts_every=0", *extra]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.ranks}"]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        rows = [
            run("torch x1", [sys.executable], base, out),
            run(f"zero2 x{args.ranks}", torchrun, [*base, "learner=zero2"], out),
            run(f"zero3 x{args.ranks}", torchrun, [*base, "learner=zero3"], out),
        ]
    ref = rows[0]["step_s"]
    print(f"{'run':<10} {'s/step':>8} {'ratio':>6} {'learner s':>10}  peak GB per rank")
    for r in rows:
        peaks = ", ".join(f"{x:.2f}" for x in r["peak_gb_per_rank"])
        print(f"{r['label']:<10} {r['step_s']:>8.3f} {r['step_s'] / ref:>6.2f} {r['learner_s']:>10.3f}  {peaks}")


if __name__ == "__main__":
    main()
