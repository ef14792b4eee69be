"""Multi-rank helpers without a process group: slicing keeps whole groups and rebuilds the one-rank
mini-batches, reductions equal the single-process formulas, launcher args are stripped.
Run: pytest tests/unit/test_multirank.py"""

import pytest
import torch

from two_grpo.cli import strip_launcher_args
from two_grpo.config.schema import ConfigError, TrainConfig
from two_grpo.data.batch import Prompt, Rollout
from two_grpo.dist import multirank as mr
from two_grpo.dist.context import DistContext, peak_memory_gb
from two_grpo.run.metrics import rollout_metrics


def prompts(n):
    return [Prompt(prompt_id=100 + i, text=f"q{i}", answer="0") for i in range(n)]


def test_shards_are_whole_prompts_and_rebuild_each_minibatch():
    ps, gids = prompts(8), list(range(8))
    # P=8, M=4, W=2: mini-batch 0 = prompts 0-3 -> rank 0 gets 0,1 and rank 1 gets 2,3; mini-batch 1 = 4-7.
    shards = [mr.shard_prompts(ps, gids, 4, DistContext(rank=r, world_size=2)) for r in range(2)]
    assert [g for g in shards[0][1]] == [0, 1, 4, 5]
    assert [g for g in shards[1][1]] == [2, 3, 6, 7]
    assert [p.prompt_id for p in shards[1][0]] == [102, 103, 106, 107]
    # local mini-batch u of every rank, joined, is the one-rank mini-batch u
    for u in range(2):
        joined = sorted(g for _, local in shards for g in local[u * 2 : (u + 1) * 2])
        assert joined == list(range(u * 4, (u + 1) * 4))
    assert mr.shard_prompts(ps, gids, 4, DistContext()) == (ps, gids)


def test_topology_checks():
    cfg = TrainConfig(prompts_per_minibatch=6)
    mr.check_topology(cfg, DistContext())  # one process: anything goes
    with pytest.raises(ConfigError, match="learner.backend=torch runs on one process only"):
        mr.check_topology(cfg, DistContext(rank=0, world_size=2))
    cfg.learner.backend = "deepspeed"
    with pytest.raises(ConfigError, match="prompts_per_minibatch=6 must be divisible by the number of ranks \\(4\\)"):
        mr.check_topology(cfg, DistContext(rank=0, world_size=4))


def test_rank_seeds_differ_and_rank0_keeps_the_single_process_seed():
    seeds = [mr.rank_sampling_seed(1234, DistContext(rank=r, world_size=4)) for r in range(4)]
    assert seeds[0] == 1234 and len(set(seeds)) == 4


def make_rollouts():
    # groups 0 (rewards 1,0), 1 (1,1: zero variance), 2 (0,0.5); one truncated rollout
    spec = [(0, 1.0, 3), (0, 0.0, 5), (1, 1.0, 2), (1, 1.0, 2), (2, 0.0, 4), (2, 0.5, 6)]
    out = [Rollout(g, g, [1], [7] * n, "", "stop", reward=r) for g, r, n in spec]
    out[1].finish_reason = "length"
    return out


def test_global_rollout_metrics_equal_the_trainers_on_one_rank():
    rollouts = make_rollouts()
    rewards = torch.tensor([r.reward for r in rollouts])
    cfg = TrainConfig()
    cfg.algo.advantage = "batch_std"
    adv, zero_var = mr.global_advantages(rewards, torch.tensor([r.group_id for r in rollouts]), cfg, DistContext())
    for r, a in zip(rollouts, adv.tolist()):
        r.advantage = a
    ours = mr.global_rollout_metrics(rollouts, zero_var, 1, 2, DistContext())
    theirs = rollout_metrics(rollouts, zero_var, 1, 2)
    assert ours.keys() == theirs.keys()
    for k in theirs:
        assert ours[k] == pytest.approx(theirs[k], abs=1e-6), k
    # hand check: solve rate 3/6; zero-variance groups 1/3; tokens (3+5+2+2+4+6)/6 = 22/6
    assert ours["rollout/solve_rate"] == 0.5 and ours["rollout/zero_var_group_frac"] == pytest.approx(1 / 3)
    assert ours["rollout/response_tokens_mean"] == pytest.approx(22 / 6)
    assert mr.global_counts(rollouts, DistContext()) == (6, 22)


def test_sharded_eval_is_the_identity_on_one_rank():
    seen = []

    def run_one(ps):
        seen.append(len(ps))
        return {"eval/x/mean@1": 0.25}

    assert mr.sharded_eval(run_one, prompts(5), DistContext()) == {"eval/x/mean@1": 0.25} and seen == [5]


def test_skip_when_the_minibatch_is_empty_everywhere():
    class Learner:
        def train_minibatch(self, mb):
            return {"optim/skipped": 0.0}

    assert mr.train_or_skip(Learner(), None, DistContext()) == {"optim/skipped": 1.0}


def test_engine_push_rule():
    class Engine:
        def __init__(self, shares):
            self.shares = shares

        def shares_learner_weights(self):
            return self.shares

    class Learner:
        owns_weights_copy = True

    assert not mr.engine_needs_push(Engine(True), object())  # HF engine on the learner's own module
    assert mr.engine_needs_push(Engine(True), Learner())  # ZeRO-3 trains a private copy
    assert mr.engine_needs_push(Engine(False), object())  # vLLM: always pushed


def test_rank_extras_and_memory():
    line = {"time/rollout": 0.5, "time/step": 1.0, "loss/policy": 3.0}
    extras = mr.rank_extras(line, DistContext())
    assert extras["time/rollout"] == 0.5 and "loss/policy" not in extras
    assert 0 < extras["memory/peak_gb"] == pytest.approx(peak_memory_gb(), rel=0.5) and extras["dist/world_size"] == 1
    summary = mr.memory_summary(DistContext())
    assert summary["memory/peak_gb_per_rank"] == [summary["memory/peak_gb"]]


def test_deepspeed_launcher_args_are_stripped(monkeypatch):
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert strip_launcher_args(["--local_rank=1", "train", "group_size=2"]) == ["train", "group_size=2"]
    import os

    assert os.environ["LOCAL_RANK"] == "1"
    assert strip_launcher_args(["train", "--local-rank", "3", "lr=1"]) == ["train", "lr=1"]


class TwoRanks(DistContext):
    """Rank `rank` of a simulated 2-rank job whose all_gather returns both ranks' objects in rank order."""

    def __init__(self, rank, parts):
        super().__init__(rank=rank, world_size=2)
        self.parts = parts

    @property
    def active(self):
        return True

    def all_gather_object(self, obj):
        return self.parts


@pytest.mark.parametrize("of", ["rewards", "centered"])
def test_global_advantages_use_the_whole_batch_std(of):
    from two_grpo.algo.advantages import compute_advantages

    rewards, ids = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.5, 0.0]), torch.tensor([0, 0, 1, 1, 2, 2])
    cfg = TrainConfig()
    cfg.algo.advantage, cfg.algo.batch_std_of = "batch_std", of
    whole, _ = compute_advantages(rewards, ids, "batch_std", eps=cfg.algo.adv_eps, batch_std_of=of)
    parts = [(rewards[:4].tolist(), ids[:4].tolist()), (rewards[4:].tolist(), ids[4:].tolist())]
    rank1, _ = mr.global_advantages(rewards[4:], ids[4:], cfg, TwoRanks(1, parts))
    assert rank1.tolist() == pytest.approx(whole[4:].tolist(), abs=1e-6)
    alone, _ = compute_advantages(rewards[4:], ids[4:], "batch_std", eps=cfg.algo.adv_eps, batch_std_of=of)
    assert alone[0].item() != pytest.approx(whole[4].item(), abs=1e-3)  # the local std would differ
