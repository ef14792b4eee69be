"""Rollout throughput: in-loop vLLM engine vs standalone vLLM vs HF generate, on the same prompts and lengths.

    python scripts/bench_rollout.py [--model builtin:tiny|@h512l8|PATH] [--prompts 32] [--group-size 8]
        [--max-new-tokens 12] [--reps 5] [--compile] [--out FILE]

`--model @h<hidden>l<layers>` builds (once, in the project cache) a randomly initialised Qwen2 of that shape with
the builtin:tiny tokenizer, to find where vLLM overtakes HF `generate` as the model grows. `--compile` builds the
engine with `enforce_eager=False` (torch.compile; CUDA graphs on a GPU).

- in-loop vLLM: `VLLMEngine.generate` as the trainer calls it (one seed per call, sampled-token log-probs,
  Rollout records), plus one weight push (`load_weights` from the HF model) before every call, as in training;
- standalone vLLM: the same `vllm.LLM` called directly (one SamplingParams, no log-probs, no push);
- HF generate: `HFEngine.generate` (the fallback engine) on the learner's module.

Tokens/s counts generated tokens (EOS included) over wall time, median of `--reps` timed calls after one warm-up.
Prints a Markdown table with ratios to HF and writes the same numbers as JSON. Timings on a shared machine are
noisy: compare ratios from one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path


def timed(fn, reps: int) -> tuple[list[float], list[int]]:
    fn()  # warm-up (first-use compiles)
    secs, toks = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        n = fn()
        secs.append(time.perf_counter() - t0)
        toks.append(n)
    return secs, toks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="builtin:tiny")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=12)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--compile", action="store_true", help="vLLM enforce_eager=False")
    ap.add_argument("--out", default="runs/bench/rollout.json")
    args = ap.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch

    from two_grpo.config.schema import ModelConfig, RolloutConfig, TaskConfig
    from two_grpo.models.loading import load_model, load_tokenizer, resolve_model_path
    from two_grpo.rollout import vllm_importable
    from two_grpo.rollout.base import Sampling
    from two_grpo.rollout.hf_engine import HFEngine
    from two_grpo.tasks import make_task

    if not vllm_importable():
        print("bench_rollout: vllm is not installed (make install VLLM=cpu); nothing to compare", file=sys.stderr)
        return 2
    model_arg = args.model
    if re.fullmatch(r"@h\d+l\d+", model_arg):
        from bench_jobs import build_random_qwen2

        from two_grpo.models.tiny_model import default_cache_dir

        hidden, layers = map(int, re.findall(r"\d+", model_arg))
        model_arg = str(build_random_qwen2(default_cache_dir() / f"bench-qwen2-{model_arg[1:]}", hidden, layers))
    mcfg = ModelConfig(path=model_arg, dtype=args.dtype)
    path = resolve_model_path(mcfg)
    tok = load_tokenizer(path)
    model = load_model(path, mcfg)
    prompts = make_task(TaskConfig(), tok).train_prompts()[: args.prompts]
    groups = list(range(len(prompts)))
    sampling = Sampling(n=args.group_size, temperature=args.temperature, max_new_tokens=args.max_new_tokens, seed=1)
    rcfg = RolloutConfig(backend="vllm", max_response_tokens=args.max_new_tokens, enforce_eager=not args.compile)

    from two_grpo.rollout.vllm_engine import VLLMEngine

    seqs = max(256, args.prompts * args.group_size)
    engine = VLLMEngine(path, tok, rcfg, args.dtype, seed=0, max_num_seqs=seqs)
    hf = HFEngine(model, tok, rcfg.max_prompt_tokens)
    from vllm import SamplingParams

    raw_params = SamplingParams(n=args.group_size, temperature=args.temperature, max_tokens=args.max_new_tokens)
    raw_inputs = [{"prompt_token_ids": ids} for ids in engine.encode_prompts(prompts, args.max_new_tokens)]
    sync_s: list[float] = []

    def in_loop() -> int:
        t0 = time.perf_counter()
        engine.load_weights(model.named_parameters())
        sync_s.append(time.perf_counter() - t0)
        return sum(len(r.token_ids) for r in engine.generate(prompts, groups, sampling))

    def standalone() -> int:
        outs = engine.llm.generate(raw_inputs, raw_params, use_tqdm=False)
        return sum(len(o.token_ids) for out in outs for o in out.outputs)

    def hf_generate() -> int:
        return sum(len(r.token_ids) for r in hf.generate(prompts, groups, sampling))

    rows = {}
    for name, fn in (("vllm in-loop (+push)", in_loop), ("vllm standalone", standalone), ("hf generate", hf_generate)):
        secs, toks = timed(fn, args.reps)
        rows[name] = {
            "tokens_per_s": statistics.median(t / s for t, s in zip(toks, secs)),
            "s_per_call_median": statistics.median(secs),
            "tokens_per_call_mean": sum(toks) / len(toks),
        }
    hf_rate = rows["hf generate"]["tokens_per_s"]
    for row in rows.values():
        row["ratio_vs_hf"] = row["tokens_per_s"] / hf_rate
    result = {
        "settings": {**vars(args), "torch_threads": torch.get_num_threads(), "model_path": path},
        "engine_startup": engine.startup_metrics(),
        "push_ms_median": 1000 * statistics.median(sync_s[1:] or sync_s),
        "rows": rows,
    }
    print(
        f"\n{args.prompts} prompts x G={args.group_size}, <= {args.max_new_tokens} new tokens, {args.dtype}, "
        f"median of {args.reps}\n"
    )
    print("| engine | tokens/s | s/call | ratio vs HF |\n|---|---:|---:|---:|")
    for name, row in rows.items():
        print(f"| {name} | {row['tokens_per_s']:.0f} | {row['s_per_call_median']:.3f} | {row['ratio_vs_hf']:.2f} |")
    print(f"\nweight push {result['push_ms_median']:.1f} ms (median); engine start-up {engine.startup_s:.1f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
