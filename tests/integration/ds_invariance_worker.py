"""Worker for tests/integration/test_deepspeed_cpu.py: train two optimizer steps on one fixed mini-batch.

Run under torchrun (1 or 2 ranks): `python ds_invariance_worker.py OUT.pt torch zero2 zero3`. Every rank
builds the same random 2-layer Qwen2 and the same global mini-batch (4 prompts x group_size 2, ragged
lengths), takes its slice of whole groups, and runs 2 steps per learner listed (the second step is off-policy, with old
log-probs from `learner.logprobs` before the first step; a KL term exercises `ref_logprobs`). Rank 0 saves, per learner,
the global loss of each step, the grad norm and the final weights (collected through `named_weights()`).
`zero3-uneven` gives the ranks unequal slices (dummy micro-batches keep ZeRO's collectives in step);
`resume-zero3` instead checks that save_state/load_state restore weights, optimizer and schedule exactly;
`nonfinite-zero2` poisons rank 0's loss with NaN on the second of three steps (every rank must skip it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for the shared model helper under torchrun
from models import random_model, small_config  # noqa: E402


def make_model():
    return random_model(small_config(48))


def make_rollouts():
    from two_grpo.data.batch import Rollout

    g = torch.Generator().manual_seed(1)
    out = []
    advs = [1.0, -1.0, 0.7, -0.7, 0.0, 0.0, -1.3, 1.3]  # 4 groups of 2
    for i, adv in enumerate(advs):
        n_prompt, n_resp = 3 + i % 3, 2 + (i * 5) % 7
        ids = torch.randint(1, 48, (n_prompt + n_resp,), generator=g).tolist()
        out.append(
            Rollout(
                group_id=i // 2,
                prompt_id=i // 2,
                prompt_token_ids=ids[:n_prompt],
                token_ids=ids[n_prompt:],
                text="",
                finish_reason="stop",
                advantage=adv,
            )
        )
    return out


def make_config(learner: str):
    from two_grpo.config.schema import TrainConfig

    cfg = TrainConfig(group_size=2, prompts_per_rollout=4, prompts_per_minibatch=4, lr=1e-2)
    cfg.learner.micro_rollouts = 3
    cfg.learner.warmup_steps = 0
    cfg.learner.grad_clip = 0.5  # active: checks that the clipping norm is the global one
    cfg.learner.zero3_persistence_threshold = 0  # partition every parameter under ZeRO-3
    cfg.algo.kl_coef = 0.1
    if learner != "torch":
        cfg.learner.backend = "deepspeed"
        cfg.learner.zero_stage = int(learner[-1])
    return cfg


def run(learner_name: str) -> dict:
    from two_grpo.data.batch import collate
    from two_grpo.dist.context import init_dist
    from two_grpo.learner import make_learner

    dist = init_dist()
    stage, _, variant = learner_name.partition("-")
    cfg = make_config(stage)
    learner = make_learner(cfg, make_model(), engine_shares_model=False)
    rollouts = make_rollouts()
    per_rank = len(rollouts) // dist.world_size  # whole groups: 4 groups of 2 over 1 or 2 ranks
    lo, hi = dist.rank * per_rank, (dist.rank + 1) * per_rank
    if variant == "uneven":  # rank 0: 3 groups (2 micro-batches), rank 1: 1 group (1 micro-batch + 1 dummy)
        lo, hi = [(0, 6), (6, 8)][dist.rank]
    mine = collate(rollouts[lo:hi], pad_id=0)
    mine = mine.with_logprobs(ref_logp=learner.ref_logprobs(mine))
    old_logp = learner.logprobs(mine)  # the sampler's log-probs: step 2 is off-policy (ratio != 1)
    losses, norms = [], []
    for step in range(2):
        m = learner.train_minibatch(mine if step == 0 else mine.with_logprobs(old_logp=old_logp))
        losses.append(m["loss/policy"] + cfg.algo.kl_coef * m["loss/kl"])
        norms.append(m["optim/grad_norm"])
    weights = {name: t.detach().float().clone() for name, t in learner.named_weights()}
    return {"loss": losses, "grad_norm": norms, "weights": weights}


def learner_and_even_slice(learner_name: str):
    """A learner without KL, this rank's equal slice of the rollouts (whole groups) as a batch, and the context."""
    from two_grpo.data.batch import collate
    from two_grpo.dist.context import init_dist
    from two_grpo.learner import make_learner

    dist = init_dist()
    cfg = make_config(learner_name)
    cfg.algo.kl_coef = 0.0
    learner = make_learner(cfg, make_model(), engine_shares_model=False)
    rollouts = make_rollouts()
    per_rank = len(rollouts) // dist.world_size
    return learner, collate(rollouts[dist.rank * per_rank : (dist.rank + 1) * per_rank], pad_id=0), dist


def run_resume(learner_name: str, folder: Path) -> dict:
    """Step 1, save_state, step 2 (weights A); load_state, step 2 again (weights B): A == B if state is whole."""
    learner, mine, _ = learner_and_even_slice(learner_name)
    learner.train_minibatch(mine)
    folder.mkdir(parents=True, exist_ok=True)
    learner.save_state(folder)
    learner.train_minibatch(mine)
    first = {name: t.detach().float().clone() for name, t in learner.named_weights()}
    learner.load_state(folder)
    learner.train_minibatch(mine)
    second = {name: t.detach().float().clone() for name, t in learner.named_weights()}
    return {"first": first, "second": second}


def run_nonfinite(learner_name: str) -> dict:
    """Three steps; the second one's loss is NaN on rank 0 only. Per rank: skipped flags, whether the weights
    after the poisoned step equal those before it, and whether the third (clean) step moved them, finitely."""
    import math

    import two_grpo.learner.deepspeed_learner as dl

    learner, mine, dist = learner_and_even_slice(learner_name)
    clean, poison = dl.micro_batch_loss, {"on": False}

    def maybe_poisoned(*args, **kwargs):
        loss, metrics = clean(*args, **kwargs)
        return (loss * math.nan, metrics) if poison["on"] and dist.rank == 0 else (loss, metrics)

    dl.micro_batch_loss = maybe_poisoned
    snapshot = lambda: {n: t.detach().float().clone() for n, t in learner.named_weights()}  # noqa: E731
    skipped = [learner.train_minibatch(mine)["optim/skipped"]]
    before = snapshot()
    poison["on"] = True
    skipped.append(learner.train_minibatch(mine)["optim/skipped"])
    after = snapshot()
    poison["on"] = False
    skipped.append(learner.train_minibatch(mine)["optim/skipped"])
    last = snapshot()
    dl.micro_batch_loss = clean
    mine_result = {
        "skipped": skipped,
        "unchanged": all(torch.equal(before[n], after[n]) for n in before),
        "finite_and_moved": all(torch.isfinite(t).all() for t in last.values())
        and any(not torch.equal(after[n], last[n]) for n in last),
        "skipped_updates": learner.skipped_updates,
    }
    per_rank_results = [None] * dist.world_size
    if dist.world_size > 1:
        torch.distributed.all_gather_object(per_rank_results, mine_result)
    else:
        per_rank_results = [mine_result]
    return {"ranks": per_rank_results}


def main() -> None:
    out_path, learners = sys.argv[1], sys.argv[2:]
    from two_grpo.dist.context import init_dist, leave

    results = {}
    for name in learners:
        if name.startswith("nonfinite-"):
            results[name] = run_nonfinite(name.split("-", 1)[1])
        elif name.startswith("resume-"):
            results[name] = run_resume(name.split("-", 1)[1], Path(out_path).parent / f"ckpt-{name}")
        else:
            results[name] = run(name)
    if init_dist().is_main:
        torch.save(results, out_path)
    leave(0)  # as the CLI's ranks do: a normal interpreter teardown can SIGABRT in gloo's threads


if __name__ == "__main__":
    main()
