"""`make bench` section `members`: is a sweep on this machine faster with members side by side at fewer threads
each, or one at a time with every core? (issue 17 part 5)

Runs the same K short `two-grpo train` members (builtin:tiny, seeds 0..K-1) in each layout:
  - `parallel=1`: one at a time, OMP_NUM_THREADS = cores;
  - `parallel=N`: N at a time, OMP_NUM_THREADS = cores // N (what `two-grpo sweep parallel=N` gives a member).
The layouts alternate per repeat (A B, then B A) so a neighbour's load hits both; the answer is the median over
repeats of the wall-clock ratio parallel=1 / parallel=N (> 1: side by side is faster), with every repeat's ratio.

    python scripts/bench_members.py [--members 4] [--steps 30] [--repeats 2] [--out runs/bench]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def member_cmd(seed: int, steps: int, run_dir: Path) -> list[str]:
    """One short default-config member: `steps` optimizer steps, a small held-out eval, no difficulty profile."""
    return [
        sys.executable, "-m", "two_grpo.cli", "train", f"seed={seed}", f"run_id=members-{seed}",
        f"budget.max_steps={steps}", "eval.prompts=32", "eval.difficulty_prompts=0", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip


def run_layout(members: int, parallel: int, steps: int, cores: int, log: Path) -> float:
    """Wall-clock seconds of `members` members run `parallel` at a time, cores // parallel threads each."""
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // parallel)), "WANDB_MODE": "offline"}
    with tempfile.TemporaryDirectory() as tmp, open(log, "a") as f:
        f.write(f"\n=== members={members} parallel={parallel} threads={env['OMP_NUM_THREADS']}\n")
        f.flush()
        t0 = time.perf_counter()
        pending = list(range(members))
        running: list[subprocess.Popen] = []
        while pending or running:
            while pending and len(running) < parallel:
                seed = pending.pop(0)
                cmd = member_cmd(seed, steps, Path(tmp) / str(seed))
                running.append(subprocess.Popen(cmd, stdout=f, stderr=f, cwd=ROOT, env=env))
            done = [p for p in running if p.poll() is not None]
            for p in done:
                if p.returncode != 0:
                    raise SystemExit(f"bench members: a member failed (exit {p.returncode}); see {log}")
                running.remove(p)
            time.sleep(0.05)
        return time.perf_counter() - t0


def section_members(log: Path, members: int = 4, steps: int = 30, repeats: int = 2) -> dict[str, Any]:
    cores = os.cpu_count() or 1
    layouts = [1, cores] if cores > 1 else [1]
    walls: dict[int, list[float]] = {p: [] for p in layouts}
    for rep in range(repeats):
        for p in layouts if rep % 2 == 0 else layouts[::-1]:
            walls[p].append(run_layout(members, p, steps, cores, log))
            print(f"  members rep {rep + 1}/{repeats} parallel={p}: {walls[p][-1]:.1f} s", flush=True)
    res: dict[str, Any] = {"members": members, "steps": steps, "cores": cores, "repeats": repeats}
    res["layouts"] = [
        {"parallel": p, "threads_per_member": max(1, cores // p), "wall_s": walls[p], "median_wall_s": statistics.median(walls[p])}
        for p in layouts
    ]  # fmt: skip
    if len(layouts) == 2:
        ratios = [a / b for a, b in zip(walls[1], walls[cores])]
        res["speedup_side_by_side"] = {"per_repeat": ratios, "median": statistics.median(ratios)}
    return res


def markdown(res: dict[str, Any]) -> list[str]:
    lines = [
        "### Sweep members: one at a time vs side by side",
        "",
        f"{res['members']} `two-grpo train` members (builtin:tiny, {res['steps']} steps, 32 eval prompts) on "
        f"{res['cores']} cores, {res['repeats']} alternating repeats.",
        "",
        "| parallel | threads per member | wall s (per repeat) | median wall s |",
        "|---|---|---|---|",
    ]
    for row in res["layouts"]:
        per = ", ".join(f"{w:.1f}" for w in row["wall_s"])
        lines.append(f"| {row['parallel']} | {row['threads_per_member']} | {per} | {row['median_wall_s']:.1f} |")
    if "speedup_side_by_side" in res:
        s = res["speedup_side_by_side"]
        per = ", ".join(f"{r:.2f}" for r in s["per_repeat"])
        lines += [
            "",
            f"Side by side vs one at a time: **{s['median']:.2f}x** (per repeat {per}; > 1 = side by side is faster).",
        ]
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="runs/bench")
    args = ap.parse_args(argv)
    if min(args.members, args.steps, args.repeats) < 1:
        print("bench members: --members, --steps and --repeats must be >= 1", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res = section_members(out / "bench-members.log", args.members, args.steps, args.repeats)
    (out / "members.json").write_text(json.dumps(res, indent=2))
    print("\n".join(markdown(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
