"""Peak memory of one learner step (forward + backward of the policy loss) at the paper's vocabulary, on CPU.

A random Qwen2 with a 151,936-token vocabulary and a small hidden size (no download) scores `--rows` rows of
`--prompt` + `--response` tokens. Each variant runs in its own subprocess and reports its peak RSS
(resource.getrusage ru_maxrss) and the step's share of it (peak minus the RSS before the step):
  legacy     full logits at every position (learner.logits_chunk_tokens=-1, the old path)
  chunk=N    response positions only, N tokens per output-head chunk (checkpointed per chunk)
The step's peak should follow the chunk, not V x L.

    python scripts/bench_memory.py                     # 2 rows x (1024 + 3072), legacy + 3 chunk sizes
    python scripts/bench_memory.py --quick             # a CI-sized run (2 x (64 + 192))
    python scripts/bench_memory.py --json out.json     # also write the table as JSON
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(args: argparse.Namespace) -> dict:
    """One variant in this process: build the model and batch, then one forward + backward of the policy loss."""
    sys.path.insert(0, str(ROOT))
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from two_grpo.config.schema import AlgoConfig
    from two_grpo.data.batch import Rollout, collate
    from two_grpo.learner.step import micro_batch_loss

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    cfg = Qwen2Config(
        vocab_size=args.vocab,
        hidden_size=args.hidden,
        intermediate_size=2 * args.hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=args.prompt + args.response,
        tie_word_embeddings=True,
    )
    model = Qwen2ForCausalLM(cfg).to(getattr(torch, args.dtype))
    g = torch.Generator().manual_seed(0)
    rollouts = [
        Rollout(
            group_id=0,
            prompt_id=0,
            prompt_token_ids=torch.randint(0, args.vocab, (args.prompt,), generator=g).tolist(),
            token_ids=torch.randint(0, args.vocab, (args.response,), generator=g).tolist(),
            text="",
            finish_reason="length",
            advantage=1.0 if i % 2 == 0 else -1.0,
        )
        for i in range(args.rows)
    ]
    batch = collate(rollouts, pad_id=0)
    before = _rss_mb()
    t0 = time.perf_counter()
    loss, metrics = micro_batch_loss(
        model, batch, AlgoConfig(), 1.0, batch.n_tokens, float(len(batch)), chunk_tokens=args.chunk
    )
    loss.backward()
    seconds = time.perf_counter() - t0
    peak = _rss_mb()
    grad_sum = float(sum(p.grad.double().abs().sum() for p in model.parameters() if p.grad is not None))
    return {
        "variant": "legacy" if args.chunk < 0 else f"chunk={args.chunk}",
        "chunk": args.chunk,
        "peak_rss_mb": round(peak, 1),
        "step_mb": round(peak - before, 1),
        "before_mb": round(before, 1),
        "step_s": round(seconds, 2),
        "loss": float(loss),
        "entropy_sum": float(metrics["loss/entropy_sum"]),
        "grad_abs_sum": grad_sum,
    }


def run_variant(args: argparse.Namespace, chunk: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--chunk", str(chunk)]
    for key in ("rows", "prompt", "response", "vocab", "hidden", "dtype", "threads"):
        cmd += [f"--{key}", str(getattr(args, key))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise SystemExit(f"bench_memory: variant chunk={chunk} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI size: 2 x (64 + 192) tokens, chunks 32/64/128")
    ap.add_argument("--rows", type=int, default=2)
    ap.add_argument("--prompt", type=int, default=1024)
    ap.add_argument("--response", type=int, default=3072)
    ap.add_argument("--vocab", type=int, default=151936)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--chunks", default="", help="comma-separated chunk sizes (default 256,1024,4096)")
    ap.add_argument("--json", default="", help="write the rows as JSON here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--chunk", type=int, default=-1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    if args.quick:
        args.prompt, args.response = 64, 192
    default_chunks = "32,64,128" if args.quick else "256,1024,4096"
    chunks = [int(c) for c in (args.chunks or default_chunks).split(",")]
    rows = [run_variant(args, c) for c in [-1, *chunks]]
    legacy = rows[0]
    print(
        f"peak RSS of one learner step: {args.rows} rows x ({args.prompt} prompt + {args.response} response) tokens, "
        f"vocab {args.vocab}, hidden {args.hidden}, {args.dtype}"
    )
    print(f"{'variant':<12} {'peak RSS MB':>12} {'step MB':>10} {'vs legacy':>10} {'step s':>8}")
    for r in rows:
        r["drop_vs_legacy"] = round(legacy["step_mb"] / max(r["step_mb"], 1.0), 2)
        print(
            f"{r['variant']:<12} {r['peak_rss_mb']:>12.0f} {r['step_mb']:>10.0f} "
            f"{r['drop_vs_legacy']:>9.1f}x {r['step_s']:>8.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
