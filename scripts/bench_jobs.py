"""Benchmark jobs, one per process: our trainer, TRL's GRPOTrainer, the bare-kernel limit (bare generation and a
bare forward/backward/AdamW step over the same kind of rollouts, with the model FLOPs of both), and the machine's
matmul peak at the workload's shapes. `scripts/bench.py` starts them.

    python scripts/bench_jobs.py JOB_JSON OUT_JSON

A job is {"kind": "ours"|"trl"|"limit"|"peak", "runs": [workload, ...]}; each workload is a dict with model path, P (prompts
per rollout batch), G (group_size), M (prompts per mini-batch), T (max response tokens), steps (measured optimizer
steps), warmup (optimizer steps not measured), micro (rows per forward/backward), threads, seed, lr. The output is
one record per workload with per-step times (seconds), tokens per step and phase times. Timing only: nothing here
checks correctness (tests/ do).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def overrides(w: dict[str, Any]) -> list[str]:
    """The `two-grpo train` overrides of workload `w` (no eval, no dumps, no progress bar)."""
    out = [
        f"model.path={w['model']}",
        f"prompts_per_rollout={w['P']}",
        f"prompts_per_minibatch={w.get('M', w['P'])}",
        f"group_size={w['G']}",
        f"rollout.max_response_tokens={w['T']}",
        f"learner.micro_rollouts={w['micro']}",
        f"learner.threads={w['threads']}",
        f"lr={w['lr']}",
        f"seed={w['seed']}",
        "budget=steps",
        f"budget.max_steps={w['warmup'] + w['steps']}",
        "eval.prompts=0",
        "logger.progress=false",
        "logger.print_every=1000000",
        "logger.dump_rollouts_every=0",
    ]
    return out + list(w.get("extra", []))


def typed_config(w: dict[str, Any]):
    from two_grpo.config.compose import compose, to_train_config

    return to_train_config(compose(overrides(w)))


# ----------------------------------------------------------------------------------------------- ours
def run_ours(w: dict[str, Any]) -> dict[str, Any]:
    """Our full training loop (trainer.train), timed from its metrics.jsonl."""
    import contextlib
    import io

    from two_grpo.config.schema import shares_prompts
    from two_grpo.run.trainer import train

    cfg = typed_config(w)
    with tempfile.TemporaryDirectory() as tmp:
        with contextlib.redirect_stdout(io.StringIO()):
            t0 = time.perf_counter()
            train(cfg, Path(tmp))
            wall = time.perf_counter() - t0
        lines = [json.loads(x) for x in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    tokens, prev = [], 0
    for line in lines:
        tokens.append(line["budget/tokens_generated_total"] - prev)
        prev = line["budget/tokens_generated_total"]
    keep = lines[w["warmup"] :]
    phases = ("rollout", "reward", "logprob", "learner", "sync")
    return {
        "step_s": [x["time/step"] for x in keep],
        "warmup_step_s": [x["time/step"] for x in lines[: w["warmup"]]],
        "gen_tokens": tokens[w["warmup"] :],
        "rollouts_per_step": w.get("M", w["P"]) * w["G"],
        "phase_s": {p: [x[f"time/{p}"] for x in keep] for p in phases},
        "rollout_batches": len({x["rollout_batch"] for x in keep}),
        "wall_s": wall,
        "shares_prompts": shares_prompts(cfg.learner),  # which learner FLOPs this run executed (bench.py roofline)
    }


# ----------------------------------------------------------------------------------------------- TRL
def ordered_prompts(w: dict[str, Any]):
    """The prompts our trainer draws, in its order, for warmup+steps optimizer steps (U = 1)."""
    from two_grpo.data.sampler import PromptSampler
    from two_grpo.models.loading import load_tokenizer, resolve_model_path
    from two_grpo.tasks import make_task

    cfg = typed_config(w)
    tok = load_tokenizer(resolve_model_path(cfg.model, quiet=True))
    train_set = make_task(cfg.task, tok).train_prompts()
    sampler = PromptSampler(len(train_set), cfg.prompts_per_rollout, cfg.seed)
    return cfg, [train_set[i] for _ in range(w["warmup"] + w["steps"]) for i in sampler.next_batch()]


def run_trl(w: dict[str, Any]) -> dict[str, Any]:
    """TRL GRPOTrainer doing the same work: same model, prompts (same order), G, temperature, lengths, reward,
    one optimizer step per generation batch, fp32, no vLLM, no eval/logging/saving."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from two_grpo.models.loading import load_tokenizer, resolve_model_path
    from two_grpo.tasks.toy_arith import exact_score

    torch.set_num_threads(w["threads"])
    cfg, prompts = ordered_prompts(w)
    path = resolve_model_path(cfg.model, quiet=True)
    tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    ds = Dataset.from_list([{"prompt": p.text, "answer": p.answer} for p in prompts])
    gen_tokens: list[int] = []

    def exact_match(prompts, completions, completion_ids, answer, **_: Any) -> list[float]:
        gen_tokens.append(sum(len(ids) for ids in completion_ids))
        return [exact_score(a, c) for a, c in zip(answer, completions)]

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_train_begin(self, args, state, control, **kw):
            self.ends.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            self.ends.append(time.perf_counter())

    clock = StepClock()
    with tempfile.TemporaryDirectory() as tmp:
        args = GRPOConfig(
            output_dir=tmp,
            per_device_train_batch_size=w["P"] * w["G"],  # completions per optimizer step
            num_generations=w["G"],
            steps_per_generation=1,
            gradient_accumulation_steps=1,
            num_iterations=1,
            max_completion_length=w["T"],
            temperature=cfg.rollout.temperature,
            top_p=cfg.rollout.top_p,
            top_k=cfg.rollout.top_k,
            learning_rate=w["lr"],
            lr_scheduler_type="constant_with_warmup",
            warmup_steps=cfg.learner.warmup_steps,
            max_grad_norm=cfg.learner.grad_clip,
            weight_decay=cfg.learner.weight_decay,
            beta=0.0,
            epsilon=cfg.algo.clip_low,
            epsilon_high=cfg.algo.clip_high,
            loss_type="dapo",  # global token mean == our token_mean
            scale_rewards="group",
            bf16=False,
            fp16=False,
            gradient_checkpointing=False,
            use_vllm=False,
            max_steps=w["warmup"] + w["steps"],
            shuffle_dataset=False,
            seed=w["seed"],
            report_to="none",
            save_strategy="no",
            eval_strategy="no",
            logging_steps=1_000_000,
            disable_tqdm=True,
            dataloader_num_workers=0,
            log_completions=False,
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=exact_match,
            args=args,
            train_dataset=ds,
            processing_class=tokenizer,
            callbacks=[clock],
        )
        gen_s: list[float] = []
        score_s: list[float] = []
        inner_gen = trainer._generate_single_turn
        inner_all = trainer._generate_and_score_completions

        def timed_gen(*a, **k):
            t0 = time.perf_counter()
            out = inner_gen(*a, **k)
            gen_s.append(time.perf_counter() - t0)
            return out

        def timed_all(*a, **k):
            t0 = time.perf_counter()
            out = inner_all(*a, **k)
            score_s.append(time.perf_counter() - t0)
            return out

        trainer._generate_single_turn = timed_gen
        trainer._generate_and_score_completions = timed_all
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
    steps = [b - a for a, b in zip(clock.ends, clock.ends[1:])]
    k = w["warmup"]
    gen, prep = gen_s[k:], score_s[k:]
    step_s = steps[k:]
    return {
        "step_s": step_s,
        "gen_tokens": gen_tokens[k:],
        "rollouts_per_step": w["P"] * w["G"],
        "phase_s": {
            "rollout": gen,
            "reward+adv": [b - a for a, b in zip(gen, prep)],
            "learner+rest": [s - b for s, b in zip(step_s, prep)],
        },
        "trl_version": __import__("trl").__version__,
        "wall_s": wall,
    }


# ----------------------------------------------------------------------------------------------- the limit
def run_limit(w: dict[str, Any]) -> dict[str, Any]:
    """The hardware limit on the same workload: per step, the same engine generates the same rollouts (same
    prompts and sampling seed), then one bare forward + backward + AdamW step over those tokens (same micro-batch
    rows; loss = -sum(adv * logp) / tokens). Scoring, advantages and collation run untimed in between, so the
    weights follow a comparable trajectory."""
    import torch

    from two_grpo.algo.advantages import compute_advantages
    from two_grpo.algo.logprobs import token_logprobs
    from two_grpo.data.batch import collate
    from two_grpo.data.sampler import PromptSampler
    from two_grpo.models.loading import load_model, load_tokenizer, resolve_model_path
    from two_grpo.rollout import make_engine
    from two_grpo.rollout.base import train_sampling
    from two_grpo.run.state import sampling_seed, seed_everything
    from two_grpo.tasks import make_task

    cfg = typed_config(w)
    torch.set_num_threads(w["threads"])
    seed_everything(cfg.seed)
    path = resolve_model_path(cfg.model, quiet=True)
    tok = load_tokenizer(path)
    task = make_task(cfg.task, tok)
    train_set = task.train_prompts()
    model = load_model(path, cfg.model)
    engine = make_engine(cfg, model, tok, path)
    opt = torch.optim.AdamW(model.parameters(), lr=w["lr"])
    sampler = PromptSampler(len(train_set), cfg.prompts_per_rollout, cfg.seed)
    gen_s, learn_s, tokens, sample_flops, learn_flops, shared_flops = [], [], [], [], [], []
    shape = flops_shape(path)
    for step in range(w["warmup"] + w["steps"]):
        prompts = [train_set[i] for i in sampler.next_batch()]
        sampling = train_sampling(cfg, sampling_seed(cfg.seed, step))
        t0 = time.perf_counter()
        rollouts = engine.generate(prompts, list(range(len(prompts))), sampling)
        t1 = time.perf_counter()
        rewards = torch.tensor([task.score_fn(p.answer, r.text) for r in rollouts for p in [prompts[r.group_id]]])
        adv, _ = compute_advantages(rewards, torch.tensor([r.group_id for r in rollouts]), "grpo", "population", 1e-6)
        for r, a in zip(rollouts, adv.tolist()):
            r.advantage = a
        batch = collate(rollouts, engine.pad_id)
        n_tok = batch.n_tokens
        t2 = time.perf_counter()
        model.train()
        for micro in batch.split_rows(w["micro"]):
            logits = model(input_ids=micro.input_ids, attention_mask=micro.attention_mask, use_cache=False).logits
            logp = token_logprobs(logits[:, :-1], micro.input_ids[:, 1:], cfg.rollout.temperature)
            loss = -(logp * micro.loss_mask * micro.adv[:, None]).sum() / n_tok
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        gen_s.append(t1 - t0)
        learn_s.append(t3 - t2)
        tokens.append(sum(len(r.token_ids) for r in rollouts))
        f_sample, f_learn = rollout_flops(shape, [(len(r.prompt_token_ids), len(r.token_ids)) for r in rollouts])
        sample_flops.append(f_sample)
        learn_flops.append(f_learn)
        shared_flops.append(shared_prefix_flops(shape, rollouts))
    k = w["warmup"]
    return {
        "gen_s": gen_s[k:],
        "learn_s": learn_s[k:],
        "gen_tokens": tokens[k:],
        "sampler_flops": sample_flops[k:],
        "learner_flops": learn_flops[k:],
        "learner_flops_shared": shared_flops[k:],
    }


def flops_shape(path: Any):
    from transformers import AutoConfig

    from two_grpo.study.flops import Shape

    return Shape.of(AutoConfig.from_pretrained(path))


def rollout_flops(shape, pairs):
    from two_grpo.study.flops import rollout_flops as count

    return count(shape, pairs)


def shared_prefix_flops(shape, rollouts) -> int:
    """Learner FLOPs of `rollouts` with learner.shared_prefix: each group's prompt once."""
    from two_grpo.study.flops import shared_prefix_learner_flops

    groups: dict[int, tuple[int, list[int]]] = {}
    for r in rollouts:
        groups.setdefault(r.group_id, (len(r.prompt_token_ids), []))[1].append(len(r.token_ids))
    return shared_prefix_learner_flops(shape, groups.values())


# ----------------------------------------------------------------------------------------------- the peak
def run_peak(w: dict[str, Any]) -> dict[str, Any]:
    """The machine's matmul throughput at this workload's own shapes (two_grpo/study/flops.py matmul_peak): the model's
    linear layers at the learner's rows per micro-batch (`learn_rows`) and at the sampler's decode rows (P x G),
    fp32 on the CPU; bf16 on the GPU too when CUDA is available. peak = the highest per-shape median."""
    import torch

    from two_grpo.models.loading import resolve_model_path
    from two_grpo.study.flops import matmul_peak, model_matmul_shapes

    cfg = typed_config(w)
    shape = flops_shape(resolve_model_path(cfg.model, quiet=True))
    shapes = sorted(set(model_matmul_shapes(shape, w["learn_rows"]) + model_matmul_shapes(shape, w["P"] * w["G"])))
    out = {"cpu_fp32": matmul_peak(shapes, repeats=w.get("peak_repeats", 5), min_s=w.get("peak_min_s", 0.2))}
    if torch.cuda.is_available():
        out["cuda_bf16"] = matmul_peak(shapes + [(8192, 8192, 8192)], dtype=torch.bfloat16, device="cuda")
    return out


def build_random_qwen2(out_dir: Path, hidden: int, layers: int, seed: int = 0) -> Path:
    """A randomly initialised Qwen2 with the builtin:tiny character tokenizer (so compute, not overhead,
    dominates a step); cached in `out_dir`. Random weights rarely emit EOS, so every rollout runs to the length
    limit and both systems generate the same number of tokens."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config

    from two_grpo.models.tiny_model import build_tokenizer

    if (out_dir / "two_grpo_recipe.json").exists():
        return out_dir
    torch.manual_seed(seed)
    tok = build_tokenizer()
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=3 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        num_key_value_heads=max(1, hidden // 128),
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    tmp = Path(tempfile.mkdtemp(prefix=out_dir.name + ".tmp-", dir=out_dir.parent))
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    n_params = sum(p.numel() for p in model.parameters())
    recipe = {"bench_random_qwen2": True, "hidden": hidden, "layers": layers, "params": n_params}
    (tmp / "two_grpo_recipe.json").write_text(json.dumps(recipe))  # marks the char tokenizer for load_tokenizer
    os.replace(tmp, out_dir)
    return out_dir


KINDS = {"ours": run_ours, "trl": run_trl, "limit": run_limit, "peak": run_peak}


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text()) if argv[0].endswith(".json") else json.loads(argv[0])
    import torch

    results = []
    for w in job["runs"]:
        torch.set_num_threads(w["threads"])
        results.append(KINDS[job["kind"]](w))
    Path(argv[1]).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
