"""`make bench` section `members`: is a sweep on this machine faster with members side by side at fewer threads
each, or one at a time with every core? (issue 17 part 5; also runnable alone)

Runs the same K short `two-grpo train` members (the embedded default config, seeds 0..K-1) in each layout:
  - `parallel=1`: one at a time, OMP_NUM_THREADS = cores;
  - `parallel=N`, N = min(K, cores) (what `two-grpo sweep parallel=auto` picks): N at a time, OMP_NUM_THREADS =
    cores // N (what the sweep gives a member).
The layouts alternate per repeat (A B, then B A) so a neighbour's load hits both. Reported per repeat: the
wall-clock ratio parallel=1 / parallel=N (> 1: side by side is faster), and the same ratio on the members' own
training time (summary.json `wallclock_s`, i.e. without the process start-up: import of torch/transformers,
config, model build); the answer is the median over repeats. Start-up share = 1 - wallclock_s / process wall.

    python scripts/bench_members.py [--members 2] [--steps 6] [--repeats 2] [--out runs/bench]
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
DEFAULT_MEMBERS = 2  # capped at the cores (the side-by-side layout runs all of them at once)
DEFAULT_STEPS = 6  # with 2 repeats: ~2.5 min on 2 quiet cores (each member ~10 s of start-up + ~1.5 s per step)


def member_cmd(seed: int, steps: int, run_dir: Path) -> list[str]:
    """One short default-config member: `steps` optimizer steps, a small held-out eval, no difficulty profile."""
    return [
        sys.executable, "-m", "two_grpo.cli", "train", f"seed={seed}", f"run_id=members-{seed}",
        f"budget.max_steps={steps}", "eval.prompts=32", "eval.difficulty_prompts=0", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip


def run_layout(members: int, parallel: int, steps: int, cores: int, log: Path) -> dict[str, Any]:
    """Run `members` members `parallel` at a time with cores // parallel threads each. Returns the layout's
    wall_s and, per member, its process wall-clock (member_wall_s) and its own training time (member_train_s,
    summary.json wallclock_s)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // parallel)), "WANDB_MODE": "offline"}
    with tempfile.TemporaryDirectory() as tmp, open(log, "a") as f:
        f.write(f"\n=== members={members} parallel={parallel} threads={env['OMP_NUM_THREADS']}\n")
        f.flush()
        t0 = time.perf_counter()
        pending = list(range(members))
        running: dict[int, tuple[subprocess.Popen, float]] = {}
        member_wall: dict[int, float] = {}
        while pending or running:
            while pending and len(running) < parallel:
                seed = pending.pop(0)
                cmd = member_cmd(seed, steps, Path(tmp) / str(seed))
                running[seed] = (subprocess.Popen(cmd, stdout=f, stderr=f, cwd=ROOT, env=env), time.perf_counter())
            for seed, (p, started) in list(running.items()):
                if p.poll() is None:
                    continue
                if p.returncode != 0:
                    raise SystemExit(f"bench members: a member failed (exit {p.returncode}); see {log}")
                member_wall[seed] = time.perf_counter() - started
                del running[seed]
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        train = [json.loads((Path(tmp) / str(s) / "summary.json").read_text())["wallclock_s"] for s in range(members)]
    return {"wall_s": wall, "member_wall_s": [member_wall[s] for s in range(members)], "member_train_s": train}


def summarize_members(runs: dict[int, list[dict[str, Any]]], members: int, steps: int, cores: int) -> dict[str, Any]:
    """runs: parallel -> one run_layout result per repeat (same repeat order in each layout). The per-repeat
    ratios pair repeat r of parallel=1 with repeat r of parallel=N; the training-only layout time is the members'
    summed training seconds / parallel (side-by-side members overlap)."""
    layouts = sorted(runs)
    res: dict[str, Any] = {"members": members, "steps": steps, "cores": cores, "repeats": len(runs[layouts[0]])}
    res["layouts"] = []
    for p in layouts:
        walls = [r["wall_s"] for r in runs[p]]
        train = [sum(r["member_train_s"]) / p for r in runs[p]]
        startup = [1 - t / w for r in runs[p] for t, w in zip(r["member_train_s"], r["member_wall_s"])]
        res["layouts"].append({
            "parallel": p, "threads_per_member": max(1, cores // p), "wall_s": walls,
            "median_wall_s": statistics.median(walls), "train_s": train, "median_train_s": statistics.median(train),
            "startup_share_median": statistics.median(startup),
        })  # fmt: skip
    if len(layouts) == 2:
        one, side = res["layouts"]
        for key, name in (("wall_s", "speedup_side_by_side"), ("train_s", "speedup_side_by_side_training_only")):
            ratios = [a / b for a, b in zip(one[key], side[key])]
            res[name] = {
                "per_repeat": ratios,
                "median": statistics.median(ratios),
                "ratio_of_medians": statistics.median(one[key]) / statistics.median(side[key]),
                "every_repeat_above_1": all(r > 1 for r in ratios),
            }
    return res


def section_members(
    log: Path, members: int = DEFAULT_MEMBERS, steps: int = DEFAULT_STEPS, repeats: int = 2, cores: int | None = None
) -> dict[str, Any]:
    cores = cores or os.cpu_count() or 1
    side = min(members, cores)
    layouts = [1, side] if side > 1 else [1]
    runs: dict[int, list[dict[str, Any]]] = {p: [] for p in layouts}
    for rep in range(repeats):
        for p in layouts if rep % 2 == 0 else layouts[::-1]:
            runs[p].append(run_layout(members, p, steps, cores, log))
            print(f"  members rep {rep + 1}/{repeats} parallel={p}: {runs[p][-1]['wall_s']:.1f} s", flush=True)
    return summarize_members(runs, members, steps, cores)


def markdown(res: dict[str, Any]) -> list[str]:
    lines = [
        "### Sweep members: one at a time vs side by side (`two-grpo sweep parallel=`)",
        "",
        f"{res['members']} `two-grpo train` members (embedded default config, {res['steps']} steps, 32 eval prompts) "
        f"on {res['cores']} cores, {res['repeats']} alternating repeats. Training s = the members' own `wallclock_s` "
        "summed / parallel (no process start-up); start-up share = 1 - wallclock_s / a member's process wall-clock.",
        "",
        "| parallel | threads per member | wall s (per repeat) | median wall s | training s (per repeat) | "
        "start-up share |",
        "|---|---|---|---|---|---|",
    ]
    for row in res["layouts"]:
        per = ", ".join(f"{w:.1f}" for w in row["wall_s"])
        tr = ", ".join(f"{w:.1f}" for w in row["train_s"])
        lines.append(
            f"| {row['parallel']} | {row['threads_per_member']} | {per} | {row['median_wall_s']:.1f} | {tr} | "
            f"{100 * row['startup_share_median']:.0f}% |"
        )
    for key, what in (("speedup_side_by_side", "wall-clock"), ("speedup_side_by_side_training_only", "training only")):
        if key in res:
            s = res[key]
            per = ", ".join(f"{r:.2f}" for r in s["per_repeat"])
            lines.append(
                f"\nSide by side vs one at a time ({what}): **{s['median']:.2f}x** median of per-repeat ratios "
                f"(per repeat {per}; ratio of medians {s['ratio_of_medians']:.2f}x; > 1 = side by side is faster)."
            )
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members", type=int, default=DEFAULT_MEMBERS)
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS)
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
