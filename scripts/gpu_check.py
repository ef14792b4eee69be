"""The GPU check (issue 13 part 3), run by `scripts/gpu_check.sh`: no download, ends within 8 minutes.

On CUDA it runs, each part in its own process (so each peak is its own):
  1. `pytest tests/gpu -k "not vllm"`: the GPU tier without vLLM (a CUDA vLLM wheel cannot be brought);
  2. one paper-shaped training step on a randomly initialised model with Qwen2.5-Math-1.5B's exact config
     (1.54 B parameters, no weights fetched), bf16, HF engine rollouts, on `learner=torch` and on DeepSpeed
     ZeRO-2 with one rank. The learner step holds 8 rows of 1024 prompt + 3072 response tokens (the rollouts are
     generated shorter, then filled with random tokens to 3072). Reported: step time, peak
     `torch.cuda.max_memory_allocated` beside the memory plan's learner-step estimate (two_grpo.run.memory_plan) and
     MFU = 6 * N * tokens / step time / 989 TFLOP/s (H100/H200 bf16 dense peak).
Without CUDA (or with --dry-run) it prints what it would run and exits 0.

    scripts/gpu_check.sh [--dry-run]
    python scripts/gpu_check.py step --learner torch|zero2     (one part 2 step; prints a RESULT json line)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PEAK_BF16_FLOPS = 989e12  # H100/H200 SXM bf16 dense, on paper
ROWS, PROMPT_TOKENS, RESPONSE_TOKENS = 8, 1024, 3072  # the learner step: 8 rows x 4096 tokens
GENERATED_TOKENS = 32  # HF engine rollouts are generated this long, then filled to RESPONSE_TOKENS
LEARNERS = ("torch", "zero2")
TIMEOUTS_S = {"tests": 200, "step": 130}  # 200 + 2 x 130 = 460 s < 8 minutes


def qwen25_math_1p5b_config() -> Any:
    """Qwen2.5-Math-1.5B's architecture (the memory plan's copy of its config.json), for a randomly initialised
    model; the fields the plan does not need are those of the hub config."""
    from transformers import Qwen2Config

    from two_grpo.run.memory_plan import KNOWN_CONFIGS

    return Qwen2Config(
        **KNOWN_CONFIGS["Qwen/Qwen2.5-Math-1.5B"],
        hidden_act="silu",
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        use_sliding_window=False,
        bos_token_id=151643,
        eos_token_id=151643,
    )


def build_model(device: str, dtype: Any = None) -> Any:
    """Qwen2ForCausalLM with random weights on `device` (`meta`: shapes only, no memory)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device(device):
        return AutoModelForCausalLM.from_config(qwen25_math_1p5b_config(), dtype=dtype or torch.bfloat16)


def step_config(learner: str) -> Any:
    """TrainConfig of the paper-shaped step: bf16, G=2, 4 prompts -> 8 rows in one micro-batch, HF engine."""
    from two_grpo.config.schema import TrainConfig

    cfg = TrainConfig(group_size=2, prompts_per_rollout=ROWS // 2, prompts_per_minibatch=ROWS // 2, lr=1e-6)
    cfg.model.path, cfg.model.dtype = "random:qwen25_math_1p5b", "bfloat16"
    cfg.rollout.backend = "hf"
    cfg.rollout.max_prompt_tokens, cfg.rollout.max_response_tokens = PROMPT_TOKENS, RESPONSE_TOKENS
    cfg.learner.micro_rollouts, cfg.learner.gradient_checkpointing, cfg.learner.warmup_steps = ROWS, True, 0
    if learner == "zero2":
        cfg.learner.backend, cfg.learner.zero_stage = "deepspeed", 2
    return cfg


def plan_lines() -> list[str]:
    py = Path(sys.executable).name
    lines = [f'1. {py} -m pytest -q -m gpu tests/gpu -k "not vllm"   (timeout {TIMEOUTS_S["tests"]} s)']
    for i, learner in enumerate(LEARNERS, 2):
        lines.append(
            f"{i}. {py} scripts/gpu_check.py step --learner {learner}   (timeout {TIMEOUTS_S['step']} s): random "
            f"Qwen2.5-Math-1.5B (bf16), HF engine {ROWS} rollouts of {GENERATED_TOKENS} tokens, one learner step on "
            f"{ROWS} x {PROMPT_TOKENS + RESPONSE_TOKENS} tokens; step time, peak memory, plan estimate, MFU"
        )
    return lines


class ByteTokenizer:
    """Enough of a tokenizer for the HF engine on a random model: characters -> ids below the vocabulary."""

    eos_token_id = pad_token_id = 151643

    def __call__(self, texts: list[str], add_special_tokens: bool = False) -> dict[str, list[list[int]]]:
        return {"input_ids": [[1000 + ord(c) % 100_000 for c in t] for t in texts]}

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return ""


def plan_estimate_gb(cfg: Any) -> float | None:
    """The memory plan's per-rank learner-step estimate in GB (two_grpo.run.memory_plan), beside the measured peak."""
    from two_grpo.run.memory_plan import make_plan

    try:
        return float(make_plan(cfg).learner_phase_gb)
    except Exception as exc:  # a plan that cannot be built is reported, never a failed check
        print(f"gpu_check: memory plan failed: {exc}", file=sys.stderr)
        return None


def run_step(learner_name: str) -> dict[str, Any]:
    """One paper-shaped learner step on CUDA; returns the measured numbers."""
    import torch

    from two_grpo.data.batch import Prompt, Rollout, collate
    from two_grpo.learner import make_learner
    from two_grpo.rollout.base import Sampling
    from two_grpo.rollout.hf_engine import HFEngine

    torch.manual_seed(0)
    cfg = step_config(learner_name)
    model = build_model("cuda")
    n_params = sum(p.numel() for p in model.parameters())  # tied embedding counted once (it is the lm_head)
    engine = HFEngine(model, ByteTokenizer(), PROMPT_TOKENS)
    prompts = [Prompt(i, "".join(chr(65 + (i + j) % 26) for j in range(PROMPT_TOKENS)), "") for i in range(ROWS // 2)]
    t0 = time.perf_counter()
    rollouts = engine.generate(
        prompts, [p.prompt_id for p in prompts], Sampling(2, 1.0, max_new_tokens=GENERATED_TOKENS)
    )
    torch.cuda.synchronize()
    gen_s = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    filled = []
    for i, r in enumerate(rollouts):
        fill = torch.randint(1000, 150000, (RESPONSE_TOKENS - len(r.token_ids),), generator=g).tolist()
        filled.append(Rollout(r.group_id, r.prompt_id, r.prompt_token_ids, r.token_ids + fill, "", "length",
                              advantage=1.0 if i % 2 else -1.0))  # fmt: skip
    batch = collate(filled, engine.pad_id)
    assert tuple(batch.input_ids.shape) == (ROWS, PROMPT_TOKENS + RESPONSE_TOKENS), batch.input_ids.shape
    learner = make_learner(cfg, model, engine.shares_learner_weights())
    out: dict[str, Any] = {"learner": learner_name, "params": n_params, "rows": ROWS, "generate_s": round(gen_s, 3)}
    out["tokens"] = tokens = int(batch.input_ids.numel())
    try:
        times = []
        for _ in range(2):  # the first step pays the kernels' warm-up; both are reported
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            metrics = learner.train_minibatch(batch)
            torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        out["step_s"], out["first_step_s"] = round(times[1], 3), round(times[0], 3)
        out["mfu"] = 6 * n_params * tokens / times[1] / PEAK_BF16_FLOPS
        out["loss_finite"] = math.isfinite(metrics.get("loss/policy", float("nan")))
    except torch.cuda.OutOfMemoryError as exc:
        out["oom"] = str(exc).splitlines()[0][:200]
    out["peak_allocated_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    out["plan_estimate_gb"] = plan_estimate_gb(cfg)
    out["device"] = torch.cuda.get_device_name()
    return out


def run_part(cmd: list[str], timeout_s: int) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        return 124, f"timed out after {timeout_s} s\n{(exc.stdout or b'')[-2000:]!r}"
    return p.returncode, p.stdout + p.stderr


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", nargs="?", default="all", choices=["all", "step"])
    parser.add_argument("--learner", choices=LEARNERS, default="torch")
    parser.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    args = parser.parse_args(argv)
    import torch

    if args.part == "step":
        if not torch.cuda.is_available():
            print("gpu_check: step needs CUDA", file=sys.stderr)
            return 2
        print("RESULT " + json.dumps(run_step(args.learner)), flush=True)
        return 0
    if args.dry_run or not torch.cuda.is_available():
        why = "--dry-run" if args.dry_run else "no CUDA device"
        print(f"gpu_check: {why}: nothing run. On a CUDA machine this runs:")
        print("\n".join("  " + line for line in plan_lines()))
        return 0
    t_start, failed, results = time.perf_counter(), 0, []
    print(f"gpu_check: {torch.cuda.get_device_name()}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}")
    rc, text = run_part(
        [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "tests/gpu", "-k", "not vllm"], TIMEOUTS_S["tests"]
    )
    print(f"1. tests/gpu without vLLM: rc={rc}\n" + "\n".join("   " + x for x in text.strip().splitlines()[-6:]))
    failed += rc not in (0, 5)  # 5: nothing collected
    for learner in LEARNERS:
        rc, text = run_part([sys.executable, __file__, "step", "--learner", learner], TIMEOUTS_S["step"])
        lines = [x for x in text.splitlines() if x.startswith("RESULT ")]
        if rc or not lines:
            failed += 1
            print(f"step --learner {learner}: rc={rc}\n" + text[-3000:])
            continue
        results.append(json.loads(lines[-1][len("RESULT ") :]))
    if results:
        print("| learner | step s (first) | tokens | peak allocated GiB | plan estimate GiB | MFU | generate s |")
        print("|---|---|---|---|---|---|---|")
        for r in results:
            step = f"{r['step_s']} ({r['first_step_s']})" if "step_s" in r else f"OOM: {r.get('oom')}"
            mfu = f"{100 * r['mfu']:.1f}%" if "mfu" in r else "-"
            plan = r["plan_estimate_gb"] if r["plan_estimate_gb"] is not None else "n/a"
            print(
                f"| {r['learner']} | {step} | {r['tokens']} | {r['peak_allocated_gb']} | {plan} | {mfu} | {r['generate_s']} |"
            )
        failed += sum("oom" in r or not r.get("loss_finite") for r in results)
    print(f"gpu_check: {'FAILED' if failed else 'ok'} in {time.perf_counter() - t_start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
