"""`make bench`: our training step vs TRL's GRPOTrainer at equal work, vs the bare-kernel limit and the hardware's
(roofline), scaling, 2 vs 16, sweep members side by side.

    python scripts/bench.py [--out runs/bench] [--repeats 3] [--threads 1] [--sections compare,limit,...] [--quick]

Every measurement runs in its own process (scripts/bench_jobs.py) and the systems being compared run interleaved,
in a rotated order per repeat, so a noisy neighbour hits both alike. Reported numbers are medians over repeats of
the per-repeat median step time (first optimizer steps are warm-up and not counted). Writes `results.json`,
`results.md` and `scaling.png` under --out and prints the Markdown.

Sections:
- compare   ours (defaults), `compiled` (ours with learner.compile=true: compiled decoder layers; --no-compiled
            skips it), TRL GRPOTrainer and the limit (bare generation + bare forward/backward/AdamW) per workload
            (--repeats, default 3; the other sections use max(2, repeats - 1) to fit in 15 minutes);
- roofline  the matmul peak at each workload's own shapes, and the model-FLOP utilisation of ours, TRL and the
            limit (learner, sampler, whole step) against it; `--sections roofline --quick` alone takes < 2 min;
- sampler   the HF engine's samplers side by side (rollout.hf_sampler=generate, lean, fused): rollout tokens/s and the
            sampler's model-FLOP utilisation of the matmul peak, interleaved repeats, medians (limit jobs: the same
            prompts and seeds, so both samplers draw the same tokens);
- opt       before/after of each optimisation (OPTS: the learner switches), before and after in one process per
            repeat in alternating order; settled rows (learner.padding_free alone, learner.adamw_impl) run only
            when named (`--opts learner.adamw_impl`, or `--opts all`);
- scaling   step time vs group_size at fixed rollouts per step, and vs rollouts per step at fixed group_size;
- two_vs_16 paper-shaped 2-GRPO vs 16-GRPO scaled to CPU (same prompts per rollout batch, P/M = 2 vs 16);
- members   a sweep's members one at a time with every core vs min(members, cores) side by side at cores // N
            threads each (scripts/bench_members.py; `--members`, `--member-steps`): wall-clock and training-only
            ratios, and the start-up share of a member (what `two-grpo sweep parallel=auto` rests on).
The engine is whatever `rollout.backend` selects (`--engine`, default hf); TRL always uses HF generate (no vLLM).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import bench_members  # noqa: E402  (scripts/ on the path)

# Workloads for the side-by-side comparison: P prompts x G rollouts per optimizer step, T max response tokens.
COMPARE = {
    "tiny (0.8M, builtin:tiny)": dict(model="builtin:tiny", P=16, G=8, T=12, micro=256),
    "small (3.2M, random init)": dict(model="@h256l4", P=4, G=8, T=32, micro=256),
}
# `compiled` in the comparison: ours with the off-by-default compiled decoder layers over the default layout (one
# packed sequence, shared prompts, attention by segments); its warm-up steps hold the compiles. Measured against
# compile=full over fixed-width packed rows (the `compiled` of 2026-12-02) on 2026-12-07: 1.25x vs 1.00x the
# defaults on tiny, 0.97x vs 0.80x on the 3.2M model.
COMPILED_WARMUP_STEPS = 4
COMPILED_FLAGS = ["learner.compile=true"]


MODELS = {"@h256l4": (256, 4)}


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def run_job(kind: str, runs: list[dict[str, Any]], log: Path) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        job, out = Path(tmp) / "job.json", Path(tmp) / "out.json"
        job.write_text(json.dumps({"kind": kind, "runs": runs}))
        with open(log, "a") as f:
            f.write(f"\n=== {kind} {json.dumps(runs)}\n")
            f.flush()
            proc = subprocess.run(
                [sys.executable, str(HERE / "bench_jobs.py"), str(job), str(out)], stdout=f, stderr=f, cwd=ROOT
            )
        if proc.returncode != 0:
            raise SystemExit(f"bench: a {kind} job failed (exit {proc.returncode}); see {log}")
        return json.loads(out.read_text())


def workload(base: dict[str, Any], args: argparse.Namespace, **over: Any) -> dict[str, Any]:
    w = dict(base)
    w.update(over)
    w.setdefault("M", w["P"])
    w.update(threads=args.threads, lr=1e-4, seed=0, warmup=w.get("warmup", 1), steps=w.get("steps", args.steps))
    if w["model"] in args.model_paths:
        w["model"] = args.model_paths[w["model"]]
    w["extra"] = [f"rollout.backend={args.engine}"] + list(w.get("extra", []))
    return w


def other_repeats(args: argparse.Namespace) -> int:
    """Repeats of the sections other than `compare` (fewer, so `make bench` fits in 15 minutes)."""
    return 1 if args.repeats == 1 else max(2, args.repeats - 1)


def per_step_stats(r: dict[str, Any]) -> dict[str, float]:
    step = median(r["step_s"])
    tok = statistics.mean(r["gen_tokens"])
    return {"step_s": step, "gen_tokens": tok, "tokens_per_s": tok / step}


# ------------------------------------------------------------------------------------------------ compare + limit
def section_compare(args, log: Path, with_trl: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    kinds = ["ours"] + ["compiled"] * args.compiled + ["trl"] * with_trl + ["limit"]
    for name, base in COMPARE.items():
        if args.workloads and not any(name.startswith(k) for k in args.workloads.split(",")):
            continue
        w = workload(base, args)
        fast = workload(base, args, warmup=COMPILED_WARMUP_STEPS, extra=COMPILED_FLAGS)
        reps: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for rep in range(args.repeats):
            order = kinds[rep % len(kinds) :] + kinds[: rep % len(kinds)]
            for kind in order:
                job, wk = ("ours", fast) if kind == "compiled" else (kind, w)
                reps[kind].append(run_job(job, [wk], log)[0])
                print(f"  compare {name} rep {rep + 1}/{args.repeats} {kind}: done", flush=True)
        out[name] = summarize_compare(w, reps)
    return out


def summarize_compare(w: dict[str, Any], reps: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    res: dict[str, Any] = {"workload": {k: w[k] for k in ("model", "P", "G", "T", "micro", "threads", "steps")}}
    for kind in ("ours", "compiled", "trl"):
        if not reps.get(kind):
            continue
        stats = [per_step_stats(r) for r in reps[kind]]
        phases = {p: median([median(r["phase_s"][p]) for r in reps[kind]]) for p in reps[kind][0]["phase_s"]}
        gen_tok = median([s["gen_tokens"] for s in stats])
        step = median([s["step_s"] for s in stats])
        res[kind] = {
            "step_s": step,
            "step_s_per_repeat": [s["step_s"] for s in stats],
            "gen_tokens_per_step": gen_tok,
            "tokens_per_s": median([s["tokens_per_s"] for s in stats]),
            "rollout_tokens_per_s": gen_tok / phases["rollout"],
            "phase_s": phases,
        }
        learner_key = "learner+rest" if kind == "trl" else "learner"
        res[kind]["learner_tokens_per_s"] = gen_tok / phases[learner_key]
        res[kind]["shares_prompts"] = all(r.get("shares_prompts", False) for r in reps[kind])  # TRL: never
        if kind == "compiled":  # the compiles (cold, then from the persistent inductor cache) sit in the warm-up
            res[kind]["warmup_s_per_repeat"] = [sum(r["warmup_step_s"]) for r in reps[kind]]
    res["limit"] = summarize_limit(reps["limit"])
    gen, learn = res["limit"]["gen_s"], res["limit"]["learn_s"]
    ours = res["ours"]
    # per-token normalisation: the runs' sampled lengths differ a little (different RNG trajectories)
    lim_per_tok = (gen + learn) / res["limit"]["gen_tokens_per_step"]
    ours["overhead_vs_limit"] = (ours["step_s"] / ours["gen_tokens_per_step"]) / lim_per_tok - 1
    share = {p: v / ours["step_s"] for p, v in ours["phase_s"].items()}
    share["other"] = 1 - sum(share.values())
    ours["phase_share"] = share
    if "compiled" in res:
        c = res["compiled"]
        c["overhead_vs_limit"] = (c["step_s"] / c["gen_tokens_per_step"]) / lim_per_tok - 1
        c["speedup_vs_ours"] = c["tokens_per_s"] / ours["tokens_per_s"]
    if "trl" in res:
        res["speedup_vs_trl"] = ours["tokens_per_s"] / res["trl"]["tokens_per_s"]
        if "compiled" in res:
            res["compiled_speedup_vs_trl"] = res["compiled"]["tokens_per_s"] / res["trl"]["tokens_per_s"]
        res["trl"]["overhead_vs_limit"] = (res["trl"]["step_s"] / res["trl"]["gen_tokens_per_step"]) / lim_per_tok - 1
    return res


def summarize_limit(lim: list[dict[str, Any]]) -> dict[str, Any]:
    gen = median([median(r["gen_s"]) for r in lim])
    learn = median([median(r["learn_s"]) for r in lim])
    return {
        "gen_s": gen,
        "learn_s": learn,
        "sum_s": gen + learn,
        "gen_tokens_per_step": median([statistics.mean(r["gen_tokens"]) for r in lim]),
        "learner_flops_per_step": median([statistics.mean(r["learner_flops"]) for r in lim]),
        "learner_flops_shared_per_step": median([statistics.mean(r["learner_flops_shared"]) for r in lim]),
        "sampler_flops_per_step": median([statistics.mean(r["sampler_flops"]) for r in lim]),
    }


# ------------------------------------------------------------------------------------------------ roofline
def section_roofline(args, log: Path, compare: dict[str, Any] | None) -> dict[str, Any]:
    """Per workload: the matmul peak at its own shapes (a `peak` job), and the model-FLOP utilisation of each
    system's learner, sampler and whole step against it. With `compare` results, ours / TRL / the limit;
    alone (`--sections roofline`), the limit's own runs."""
    out: dict[str, Any] = {}
    for name, base in COMPARE.items():
        if args.workloads and not any(name.startswith(k) for k in args.workloads.split(",")):
            continue
        w = workload(base, args)
        w["learn_rows"] = min(w["micro"], w["P"] * w["G"]) * (w["T"] + 8)  # ~ tokens per learner micro-batch
        peak = run_job("peak", [w], log)[0]
        print(f"  roofline {name}: peak measured", flush=True)
        if compare and name in compare:
            row = compare[name]
        else:
            row = {"limit": summarize_limit([run_job("limit", [w], log)[0] for _ in range(args.repeats)])}
            print(f"  roofline {name}: limit runs done", flush=True)
        out[name] = roofline(row, peak)
    return out


def roofline(row: dict[str, Any], peak: dict[str, Any]) -> dict[str, Any]:
    """Utilisation = model FLOPs per second / peak FLOP/s. Model FLOPs per generated token come from the limit's
    runs (the same prompts; two_grpo/study/flops.py) and are applied to each system's own tokens per step."""
    lim = row["limit"]
    peak_fps = peak["cpu_fp32"]["peak_flops_per_s"]
    f_learn = lim["learner_flops_per_step"] / lim["gen_tokens_per_step"]
    # a run with learner.shared_prefix (the torch learner's default) executes each group's prompt once
    f_shared = lim["learner_flops_shared_per_step"] / lim["gen_tokens_per_step"]
    f_sample = lim["sampler_flops_per_step"] / lim["gen_tokens_per_step"]
    out: dict[str, Any] = {"peak": peak, "peak_flops_per_s": peak_fps, "learner_flops_per_gen_token": f_learn,
                           "sampler_flops_per_gen_token": f_sample,
                           "learner_flops_shared_per_gen_token": f_shared}  # fmt: skip
    times = {"limit": (lim["gen_s"], lim["learn_s"], lim["sum_s"], lim["gen_tokens_per_step"])}
    shared = {kind: bool(row.get(kind, {}).get("shares_prompts")) for kind in ("limit", "ours", "compiled", "trl")}
    for kind, learner_key in (("ours", "learner"), ("compiled", "learner"), ("trl", "learner+rest")):
        if kind in row:
            x = row[kind]
            times[kind] = (x["phase_s"]["rollout"], x["phase_s"][learner_key], x["step_s"], x["gen_tokens_per_step"])
    gen_tok = lim["gen_tokens_per_step"]
    hw = {"gen_s": f_sample * gen_tok / peak_fps, "learn_s": f_learn * gen_tok / peak_fps}
    hw["step_s"] = hw["gen_s"] + hw["learn_s"]
    out["hardware"] = hw
    for kind, (gen_s, learn_s, step_s, tok) in times.items():
        out[kind] = {
            "sampler_util": f_sample * tok / gen_s / peak_fps,
            "learner_util": f_learn * tok / learn_s / peak_fps,
            "learner_util_executed": (f_shared if shared[kind] else f_learn) * tok / learn_s / peak_fps,
            "step_util": (f_sample + f_learn) * tok / step_s / peak_fps,
            "step_over_hardware": (step_s / tok) / (hw["step_s"] / gen_tok),  # per generated token
        }
    return out


# ------------------------------------------------------------------------------------------------ sampler
SAMPLERS = ("generate", "lean", "fused")


def section_sampler(args, log: Path) -> dict[str, Any]:
    """Per workload: the matmul peak at its shapes, then `limit` jobs (bare generation + learner step, only the
    generation counted here) with each rollout.hf_sampler, in one process per repeat, in a rotated order.
    Reports the median rollout seconds per step, tokens/s, sampler utilisation and the speed-up over generate.
    Model FLOPs are counted as two_grpo/flops.py does (each rollout's prompt prefilled once), so a sampler that
    shares a group's prefill does fewer FLOPs than counted: its utilisation is an effective one."""
    out: dict[str, Any] = {}
    for name, base in COMPARE.items():
        if args.workloads and not any(name.startswith(k) for k in args.workloads.split(",")):
            continue
        w = workload(base, args)
        w["learn_rows"] = min(w["micro"], w["P"] * w["G"]) * (w["T"] + 8)
        peak = run_job("peak", [w], log)[0]["cpu_fp32"]["peak_flops_per_s"]
        runs = {s: {**w, "extra": ["rollout.backend=hf", f"rollout.hf_sampler={s}"]} for s in SAMPLERS}
        reps: dict[str, list[dict[str, Any]]] = {s: [] for s in SAMPLERS}
        for rep in range(args.repeats):  # one process per repeat, the samplers in a rotated order
            order = SAMPLERS[rep % len(SAMPLERS) :] + SAMPLERS[: rep % len(SAMPLERS)]
            for s, r in zip(order, run_job("limit", [runs[s] for s in order], log)):
                reps[s].append(r)
            print(f"  sampler {name} rep {rep + 1}/{args.repeats}: done", flush=True)
        row: dict[str, Any] = {"workload": {k: w[k] for k in ("model", "P", "G", "T", "threads")},
                               "peak_flops_per_s": peak}  # fmt: skip
        for s, rs in reps.items():
            lim = summarize_limit(rs)
            row[s] = {
                "gen_s": lim["gen_s"],
                "gen_s_per_repeat": [median(r["gen_s"]) for r in rs],
                "gen_tokens_per_step": lim["gen_tokens_per_step"],
                "tokens_per_s": lim["gen_tokens_per_step"] / lim["gen_s"],
                "sampler_util": lim["sampler_flops_per_step"] / lim["gen_s"] / peak,
            }
        for s in SAMPLERS:  # ratio of medians of interleaved repeats
            row[s]["speedup"] = row["generate"]["gen_s"] / row[s]["gen_s"]
        out[name] = row
    return out


# ------------------------------------------------------------------------------------------------ optimisations
OPTS = {
    "learner.sort_by_length": dict(
        base=dict(model="builtin:tiny", P=16, G=8, T=12, micro=16), flag="learner.sort_by_length"
    ),
    "learner.skip_onpolicy_logprob": dict(
        base=dict(model="builtin:tiny", P=32, M=16, G=4, T=12, micro=256, warmup=2, steps=4),
        flag="learner.skip_onpolicy_logprob",
    ),
    # issue 17 (the README's Performance section). padding_free alone (rows end to end, no prompt sharing):
    "learner.padding_free": dict(
        base=dict(model="builtin:tiny", P=16, G=8, T=12, micro=16, extra=["learner.shared_prefix=false"]),
        flag="learner.padding_free",
        default=False,  # settled (0.75-0.91x alone; the default layout's gain is the row below): `--opts` it by name
    ),
    "learner.shared_prefix": dict(  # over packed rows (padding_free, one sequence, segment attention: the defaults)
        base=dict(model="builtin:tiny", P=16, G=8, T=12, micro=256), flag="learner.shared_prefix"
    ),
    "learner.shared_prefix (3.2M)": dict(
        base=dict(model="@h256l4", P=4, G=8, T=32, micro=256), flag="learner.shared_prefix"
    ),
    "padded -> the default layout": dict(  # padding_free + shared_prefix (the torch learner's default) vs padded
        base=dict(model="builtin:tiny", P=16, G=8, T=12, micro=256), flag="learner.padding_free"
    ),
    # attention by segments in one packed sequence (the default) vs the dense block mask over 128-token sequences
    # (the previous default: a dense mask needs the cap)
    "learner.segment_attention (pack 128 -> 0)": dict(
        base=dict(model="builtin:tiny", P=16, G=8, T=12, micro=256),
        flag="learner.segment_attention",
        extra_off=["learner.pack_tokens=128"],
    ),
    "learner.segment_attention (3.2M, pack 128 -> 0)": dict(
        base=dict(model="@h256l4", P=4, G=8, T=32, micro=256),
        flag="learner.segment_attention",
        extra_off=["learner.pack_tokens=128"],
    ),
    "learner.adamw_impl=default (fused)": dict(
        base=dict(model="@h256l4", P=4, G=8, T=32, micro=256),
        flag="learner.adamw_impl",
        values=("for_loop", "default"),
        default=False,  # settled (1.02-1.04x in three runs): `--opts learner.adamw_impl` runs it
    ),
    "learner.compile": dict(  # compiled layers over the default layout; 4 warm-up steps hold the (one) compile
        base=dict(model="builtin:tiny", P=16, G=8, T=12, micro=256, warmup=4), flag="learner.compile"
    ),
    "learner.compile (3.2M)": dict(
        base=dict(model="@h256l4", P=4, G=8, T=32, micro=256, warmup=4), flag="learner.compile"
    ),
}


def section_opt(args, log: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in OPTS.items():
        chosen = args.opts.split(",") if args.opts else []
        if (chosen and chosen != ["all"] and not any(name.startswith(k) for k in chosen)) or (
            not chosen and not spec.get("default", True)
        ):
            continue
        off, on = spec.get("values", ("false", "true"))
        extra = list(spec["base"].get("extra", []))
        before = workload(spec["base"], args, extra=extra + spec.get("extra_off", []) + [f"{spec['flag']}={off}"])
        after = workload(spec["base"], args, extra=extra + [f"{spec['flag']}={on}"])
        reps: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
        for rep in range(other_repeats(args)):  # one process per repeat: before and after, alternating order
            pair = [("before", before), ("after", after)]
            pair = pair if rep % 2 == 0 else pair[::-1]
            for (label, _), r in zip(pair, run_job("ours", [w for _, w in pair], log)):
                reps[label].append(r)
            print(f"  opt {name} rep {rep + 1}: done", flush=True)
        row: dict[str, Any] = {"workload": {k: spec["base"][k] for k in spec["base"]}}
        for label, rs in reps.items():
            row[label] = {
                "step_s": median([median(r["step_s"]) for r in rs]),
                "tokens_per_s": median([per_step_stats(r)["tokens_per_s"] for r in rs]),
                "phase_s": {p: median([median(r["phase_s"][p]) for r in rs]) for p in rs[0]["phase_s"]},
            }
        row["speedup"] = row["after"]["tokens_per_s"] / row["before"]["tokens_per_s"]
        out[name] = row
    return out


# ------------------------------------------------------------------------------------------------ scaling
def section_scaling(args, log: Path) -> dict[str, Any]:
    base = dict(model="builtin:tiny", T=12, micro=256, steps=max(2, args.steps - 1))
    fixed_rollouts = 128
    by_group = [workload(base, args, G=g, P=fixed_rollouts // g) for g in (2, 4, 8, 16)]
    by_rollouts = [workload(base, args, G=8, P=r // 8) for r in (32, 64, 256)]  # 128 is in by_group
    runs = by_group + by_rollouts
    reps = []
    for rep in range(other_repeats(args)):
        order = runs if rep % 2 == 0 else runs[::-1]
        res = run_job("ours", order, log)
        reps.append(res if rep % 2 == 0 else res[::-1])
        print(f"  scaling rep {rep + 1}: done", flush=True)
    rows = []
    for i, w in enumerate(runs):
        rs = [rep[i] for rep in reps]
        rows.append(
            {
                "group_size": w["G"],
                "prompts": w["P"],
                "rollouts": w["P"] * w["G"],
                "step_s": median([median(r["step_s"]) for r in rs]),
                "gen_tokens": median([statistics.mean(r["gen_tokens"]) for r in rs]),
                "phase_s": {p: median([median(r["phase_s"][p]) for r in rs]) for p in rs[0]["phase_s"]},
            }
        )
    return {"by_group_size": rows[:4], "by_rollouts": sorted(rows[4:] + [rows[2]], key=lambda r: r["rollouts"])}


def plot_scaling(scaling: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    g = scaling["by_group_size"]
    a.plot([r["group_size"] for r in g], [r["step_s"] for r in g], "o-", label="step")
    a.plot([r["group_size"] for r in g], [r["phase_s"]["rollout"] for r in g], "s--", label="rollout")
    a.plot([r["group_size"] for r in g], [r["phase_s"]["learner"] for r in g], "^--", label="learner")
    a.set_xscale("log", base=2)
    a.set_xlabel(f"group_size (fixed {g[0]['rollouts']} rollouts/step)")
    a.set_ylabel("seconds")
    a.set_ylim(bottom=0)
    a.legend()
    r = scaling["by_rollouts"]
    b.plot([x["rollouts"] for x in r], [x["step_s"] for x in r], "o-", label="step")
    b.plot([x["rollouts"] for x in r], [x["phase_s"]["rollout"] for x in r], "s--", label="rollout")
    b.plot([x["rollouts"] for x in r], [x["phase_s"]["learner"] for x in r], "^--", label="learner")
    b.set_xscale("log", base=2)
    b.set_yscale("log")
    b.set_xlabel("rollouts per step (group_size 8)")
    b.legend()
    fig.suptitle("two-grpo step time, builtin:tiny, HF engine, CPU (noisy shared machine)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ------------------------------------------------------------------------------------------------ 2 vs 16
def section_two_vs_16(args, log: Path) -> dict[str, Any]:
    """Paper §3 scaled to CPU: P=32 prompts per rollout batch; 16-GRPO G=16, M=2 (P/M=16 steps per batch, as
    512/32); 2-GRPO G=2, M=16 (P/M=2, as 512/256). Both see the same prompts (matched epochs); one warm-up rollout
    batch, then one measured rollout batch."""
    base = dict(model="builtin:tiny", T=12, micro=256, P=32)
    cfgs = {
        "16-GRPO": workload(base, args, G=16, M=2, warmup=16, steps=16 * args.two_vs_16_batches),
        "2-GRPO": workload(base, args, G=2, M=16, warmup=2, steps=2 * args.two_vs_16_batches),
    }
    reps: dict[str, list[dict[str, Any]]] = {k: [] for k in cfgs}
    for rep in range(other_repeats(args)):
        for name in list(cfgs) if rep % 2 == 0 else list(cfgs)[::-1]:
            reps[name].append(run_job("ours", [cfgs[name]], log)[0])
        print(f"  2 vs 16 rep {rep + 1}: done", flush=True)
    out: dict[str, Any] = {}
    for name, rs in reps.items():
        per_batch = []
        for r in rs:  # seconds per rollout batch, by phase
            n = r["rollout_batches"]
            phase = {p: sum(v) / n for p, v in r["phase_s"].items()}
            phase["total"] = sum(r["step_s"]) / n
            per_batch.append(phase)
        out[name] = {p: median([x[p] for x in per_batch]) for p in per_batch[0]}
        out[name]["gen_tokens_per_batch"] = median([sum(r["gen_tokens"]) / r["rollout_batches"] for r in rs])
    out["fraction"] = {p: out["2-GRPO"][p] / out["16-GRPO"][p] for p in out["2-GRPO"] if out["16-GRPO"][p] > 1e-4}
    return out


# ------------------------------------------------------------------------------------------------ report
def fmt(x: float, nd: int = 3) -> str:
    return f"{x:.{nd}f}"


def markdown(res: dict[str, Any]) -> str:
    m = res["meta"]
    lines = [
        "## Benchmark results",
        "",
        f"Command: `{m['command']}`  ",
        f"Machine: {m['machine']}; torch threads {m['threads']}; engine `{m['engine']}`; trl {m.get('trl', '-')}; "
        f"{m['repeats']} repeats, interleaved; medians. Timings on a shared machine are noisy: compare ratios within "
        "one run only.",
        "",
    ]
    if "compare" in res:
        lines += [
            "### Ours vs TRL GRPOTrainer vs the limit (equal work)",
            "",
            "| workload | system | step s (median) | gen tokens/step | tokens/s (step) | rollout tok/s | "
            "learner tok/s | over limit | speed-up vs TRL | step / hardware |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        roof = res.get("roofline", {})

        def vs_hw(name: str, kind: str) -> str:  # the roofline section's step time over the hardware's
            return f"{roof[name][kind]['step_over_hardware']:.2f}x" if kind in roof.get(name, {}) else ""

        for name, r in res["compare"].items():
            for kind in ("ours", "compiled", "trl"):
                if kind not in r:
                    continue
                x = r[kind]
                key = {"ours": "speedup_vs_trl", "compiled": "compiled_speedup_vs_trl"}.get(kind, "")
                sp = fmt(r[key], 2) + "x" if key in r else ""
                lines.append(
                    f"| {name} P={r['workload']['P']} G={r['workload']['G']} T={r['workload']['T']} | {kind} | "
                    f"{fmt(x['step_s'])} | {x['gen_tokens_per_step']:.0f} | {x['tokens_per_s']:.0f} | "
                    f"{x['rollout_tokens_per_s']:.0f} | {x['learner_tokens_per_s']:.0f} | "
                    f"{100 * x['overhead_vs_limit']:+.1f}% | {sp} | {vs_hw(name, kind)} |"
                )
            lim = r["limit"]
            lines.append(
                f"| {name} | limit (gen {fmt(lim['gen_s'])} + fwd/bwd/AdamW {fmt(lim['learn_s'])}) | "
                f"{fmt(lim['sum_s'])} | {lim['gen_tokens_per_step']:.0f} | "
                f"{lim['gen_tokens_per_step'] / lim['sum_s']:.0f} | "
                f"{lim['gen_tokens_per_step'] / lim['gen_s']:.0f} | {lim['gen_tokens_per_step'] / lim['learn_s']:.0f} "
                f"| 0 | | {vs_hw(name, 'limit')} |"
            )
            if name in roof:
                hw = roof[name]["hardware"]
                lines.append(
                    f"| {name} | hardware (gen {fmt(hw['gen_s'])} + learn {fmt(hw['learn_s'])} at the matmul peak) | "
                    f"{fmt(hw['step_s'])} | | | | | | | 1.00x |"
                )
        warm = {
            n.split(" ")[0]: r["compiled"]["warmup_s_per_repeat"] for n, r in res["compare"].items() if "compiled" in r
        }
        if warm:
            secs = "; ".join(f"{n} " + ", ".join(f"{x:.0f}" for x in v) for n, v in warm.items())
            lines += [
                "",
                f"`compiled` = ours with `{' '.join(COMPILED_FLAGS)}` (compiled decoder layers, default layout): its "
                f"{COMPILED_WARMUP_STEPS} warm-up steps (not timed) hold the compiles, seconds per repeat: {secs}.",
            ]
        lines += ["", "Our time share per phase (of the median step):", ""]
        lines += ["| workload | rollout | reward | logprob | learner | sync | other |", "|---|---|---|---|---|---|---|"]
        for name, r in res["compare"].items():
            s = r["ours"]["phase_share"]
            cols = " | ".join(f"{100 * s.get(p, 0):.1f}%" for p in ("rollout", "reward", "logprob", "learner", "sync"))
            lines.append(f"| {name} | {cols} | {100 * s['other']:.1f}% |")
        lines.append("")
    if "roofline" in res:
        lines += [
            "### Roofline: model-FLOP utilisation of the measured matmul peak",
            "",
            "Peak = the highest median fp32 matmul throughput at the workload's own shapes (its linear layers at the "
            "learner's and the sampler's rows, and 1024³); model FLOPs from `two_grpo/study/flops.py` (learner ≈ 6·params·"
            "tokens, sampler ≈ 2·params·generated tokens, plus attention). Hardware = the step at that peak. "
            "`learner util` counts the update's model FLOPs with every row's own prompt (as TRL runs it); "
            "`executed` counts what the learner ran: each group's prompt once in a run with `learner.shared_prefix` "
            "on (ours and compiled by default: the same update with fewer FLOPs), every row's prompt otherwise.",
            "",
            "| workload | peak GFLOP/s | system | learner util | learner util (executed) | sampler util | step util "
            "| step / hardware |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, r in res["roofline"].items():
            hw = r["hardware"]
            for kind in ("ours", "compiled", "trl", "limit"):
                if kind in r:
                    x = r[kind]
                    lines.append(
                        f"| {name} | {r['peak_flops_per_s'] / 1e9:.1f} | {kind} | {100 * x['learner_util']:.1f}% | "
                        f"{100 * x['learner_util_executed']:.1f}% | "
                        f"{100 * x['sampler_util']:.1f}% | {100 * x['step_util']:.1f}% | "
                        f"{x['step_over_hardware']:.2f}x |"
                    )
            lines.append(
                f"| {name} | | hardware (gen {fmt(hw['gen_s'])} + learn {fmt(hw['learn_s'])} s) | 100% | | 100% | 100% "
                "| 1.00x |"
            )
        lines += ["", "| workload | matmul m×k×n | median GFLOP/s | max GFLOP/s |", "|---|---|---|---|"]
        for name, r in res["roofline"].items():
            for x in r["peak"]["cpu_fp32"]["shapes"]:
                lines.append(
                    f"| {name} | {x['m']}×{x['k']}×{x['n']} | {x['median_flops_per_s'] / 1e9:.1f} | "
                    f"{x['max_flops_per_s'] / 1e9:.1f} |"
                )
            if "cuda_bf16" in r["peak"]:
                lines.append(
                    f"| {name} | CUDA bf16 peak | {r['peak']['cuda_bf16']['peak_flops_per_s'] / 1e12:.1f} T | |"
                )
        lines.append("")
    if "sampler" in res:
        lines += [
            "### HF engine sampler: transformers generate vs the lean loop (`rollout.hf_sampler`)",
            "",
            "| workload | sampler | rollout s/step (median) | gen tokens/step | rollout tok/s | sampler util | "
            "vs generate |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in res["sampler"].items():
            for s in SAMPLERS:
                x = r[s]
                sp = f"{x['speedup']:.2f}x"
                lines.append(
                    f"| {name} | {s} | {fmt(x['gen_s'], 4)} | {x['gen_tokens_per_step']:.0f} | "
                    f"{x['tokens_per_s']:.0f} | {100 * x['sampler_util']:.1f}% | {sp} |"
                )
        lines.append("")
    if "opt" in res:
        lines += [
            "### Optimisations, before / after (same run, interleaved)",
            "",
            "| change | workload | step s before | step s after | tokens/s speed-up |",
            "|---|---|---|---|---|",
        ]
        for name, r in res["opt"].items():
            wl = " ".join(f"{k}={v}" for k, v in r["workload"].items() if k != "model")
            lines.append(
                f"| `{name}` | {wl} | {fmt(r['before']['step_s'])} | {fmt(r['after']['step_s'])} | "
                f"{fmt(r['speedup'], 2)}x |"
            )
        lines.append("")
    if "scaling" in res:
        lines += [
            "### Scaling (ours, builtin:tiny)",
            "",
            "| group_size | prompts | rollouts/step | gen tokens/step | step s | rollout s | learner s | s per 1k tokens |",
            "|---|---|---|---|---|---|---|---|",
        ]
        rows = res["scaling"]["by_group_size"] + [
            r for r in res["scaling"]["by_rollouts"] if r not in res["scaling"]["by_group_size"]
        ]
        for r in rows:
            lines.append(
                f"| {r['group_size']} | {r['prompts']} | {r['rollouts']} | {r['gen_tokens']:.0f} | {fmt(r['step_s'])} "
                f"| {fmt(r['phase_s']['rollout'])} | {fmt(r['phase_s']['learner'])} | "
                f"{1000 * r['step_s'] / r['gen_tokens']:.2f} |"
            )
        lines += ["", "Plot: `scaling.png`.", ""]
    if "two_vs_16" in res:
        t = res["two_vs_16"]
        phases = [p for p in ("rollout", "reward", "logprob", "learner", "sync", "total") if p in t["16-GRPO"]]
        lines += [
            "### 2-GRPO vs 16-GRPO (paper shape scaled to CPU: 32 prompts per rollout batch; M=16 vs M=2)",
            "",
            "| seconds per rollout batch | " + " | ".join(phases) + " | gen tokens |",
            "|---" * (len(phases) + 2) + "|",
        ]
        for name in ("16-GRPO", "2-GRPO"):
            lines.append(
                f"| {name} | "
                + " | ".join(fmt(t[name][p]) for p in phases)
                + f" | {t[name]['gen_tokens_per_batch']:.0f} |"
            )
        lines.append(
            "| 2-GRPO / 16-GRPO | "
            + " | ".join(f"{100 * t['fraction'][p]:.1f}%" if p in t["fraction"] else "-" for p in phases)
            + f" | {100 * t['2-GRPO']['gen_tokens_per_batch'] / t['16-GRPO']['gen_tokens_per_batch']:.1f}% |"
        )
        lines.append("")
    if "members" in res:
        lines += bench_members.markdown(res["members"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/bench")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4, help="measured optimizer steps per run (after 1 warm-up)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, the same for every system")
    ap.add_argument("--engine", default="hf", help="rollout.backend for our runs (TRL uses HF generate)")
    ap.add_argument("--sections", default="compare,roofline,sampler,opt,scaling,two_vs_16,members")
    ap.add_argument("--two-vs-16-batches", type=int, default=1, help="measured rollout batches per 2-vs-16 run")
    ap.add_argument("--workloads", default="", help="compare only these workloads (name prefixes: tiny,small)")
    ap.add_argument(
        "--opts", default="", help="opt section: these optimisations (name prefixes; all = every row, settled ones too)"
    )
    ap.add_argument("--members", type=int, default=bench_members.DEFAULT_MEMBERS, help="members section: members")
    ap.add_argument("--member-steps", type=int, default=bench_members.DEFAULT_STEPS, help="members: steps each")
    ap.add_argument("--no-trl", action="store_true", help="skip TRL (when the bench extra is not installed)")
    ap.add_argument(
        "--no-compiled",
        dest="compiled",
        action="store_false",
        help="compare: skip the `compiled` system (its cold compile takes minutes)",
    )
    ap.add_argument("--quick", action="store_true", help="1 repeat, 2 steps: checks the script, not the numbers")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.steps, args.member_steps = 1, 2, 2
    if min(args.repeats, args.steps, args.threads, args.members, args.member_steps) < 1:
        print("bench: --repeats, --steps, --threads, --members and --member-steps must be >= 1", file=sys.stderr)
        return 2
    with_trl = not args.no_trl
    trl_version = None
    if with_trl:
        try:
            from importlib.metadata import version

            trl_version = version("trl")
        except Exception:
            print('bench: trl is not installed; `pip install "torch==2.13.0" -e ".[dev,bench]"` or pass --no-trl')
            return 2
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = set(sections) - {"compare", "roofline", "sampler", "opt", "scaling", "two_vs_16", "members"}
    if bad:
        print(
            f"bench: unknown section(s) {sorted(bad)}; choose from compare, roofline, sampler, opt, scaling, two_vs_16, "
            "members",
            file=sys.stderr,
        )
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "bench.log"
    log.write_text("")
    from bench_jobs import build_random_qwen2

    cache = Path(os.environ.get("TWO_GRPO_CACHE") or Path.home() / ".cache" / "two_grpo")
    cache.mkdir(parents=True, exist_ok=True)
    args.model_paths = {
        k: str(build_random_qwen2(cache / f"bench-qwen2-{k[1:]}", h, n)) for k, (h, n) in MODELS.items()
    }
    t0 = time.time()
    res: dict[str, Any] = {
        "meta": {
            "command": "python scripts/bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_implementation()} "
            f"{platform.python_version()}",
            "threads": args.threads,
            "engine": args.engine,
            "trl": trl_version,
            "repeats": args.repeats,
            "steps": args.steps,
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        }
    }
    runners = {
        "compare": lambda: section_compare(args, log, with_trl),
        "roofline": lambda: section_roofline(args, log, res.get("compare")),
        "sampler": lambda: section_sampler(args, log),
        "opt": lambda: section_opt(args, log),
        "scaling": lambda: section_scaling(args, log),
        "two_vs_16": lambda: section_two_vs_16(args, log),
        "members": lambda: bench_members.section_members(log, args.members, args.member_steps, other_repeats(args)),
    }
    res["meta"]["section_s"] = {}
    for section, run in runners.items():
        if section in sections:
            t_section = time.time()
            res[section] = run()
            res["meta"]["section_s"][section] = round(time.time() - t_section, 1)
    if "scaling" in res:
        plot_scaling(res["scaling"], out / "scaling.png")
    res["meta"]["wall_s"] = time.time() - t0
    (out / "results.json").write_text(json.dumps(res, indent=2))
    per_section = ", ".join(f"{k} {v:.0f} s" for k, v in res["meta"]["section_s"].items())
    md = markdown(res) + f"\nTotal bench wall-clock: {res['meta']['wall_s']:.0f} s ({per_section}).\n"
    (out / "results.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
