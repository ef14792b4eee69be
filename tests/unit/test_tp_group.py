"""Tensor-parallel rollout groups (two_grpo/rollout/tp_group.py) on simulated ranks: the ranks of a TP group
submit identical requests (same prompts, same seed), and each rank gets back exactly the rollouts of its own
slice. Plus the topology checks. Run: pytest tests/unit/test_tp_group.py"""

import pytest

from two_grpo import rollout
from two_grpo.config.schema import ConfigError
from two_grpo.data.batch import Prompt, Rollout
from two_grpo.dist.context import DistContext
from two_grpo.dist.multirank import check_topology
from two_grpo.rollout.base import Sampling
from two_grpo.rollout.tp_group import TPGroupEngine

N = 3  # rollouts per prompt


class RecordingEngine:
    """Fake engine: rollout k of prompt p has token_ids [prompt_id, k, seed]; records every request."""

    name, pad_id = "fake", 0

    def __init__(self):
        self.requests = []

    def generate(self, prompts, group_ids, sampling):
        self.requests.append(([p.prompt_id for p in prompts], list(group_ids), sampling.seed))
        return [
            Rollout(g, p.prompt_id, [1], [p.prompt_id, k, sampling.seed], "", "stop")
            for p, g in zip(prompts, group_ids)
            for k in range(sampling.n)
        ]


class SimulatedDist(DistContext):
    """One rank of a world whose every rank's all_gather_object input is known in advance."""

    def __init__(self, rank, world, gathered):
        super().__init__(rank=rank, world_size=world, backend="gloo")
        self.gathered = gathered

    def all_gather_object(self, obj):
        assert obj == self.gathered[self.rank]  # this rank contributes what it was asked to
        return self.gathered


def test_tp_group_members_submit_identical_requests_and_keep_their_own_slice():
    world, tp = 4, 2
    # rank r asks for prompts of ids 10r, 10r+1 (rank 3: one prompt only), group ids 100 + id, its own seed
    slices = {r: [Prompt(10 * r + i, f"{r}+{i}=", "") for i in range(2 if r < 3 else 1)] for r in range(world)}
    asks = [(slices[r], [100 + p.prompt_id for p in slices[r]], 1000 + r) for r in range(world)]
    engines = {r: RecordingEngine() for r in range(world)}
    got = {}
    for r in range(world):
        wrapped = TPGroupEngine(engines[r], tp, SimulatedDist(r, world, asks))
        prompts, groups, seed = asks[r]
        got[r] = wrapped.generate(prompts, groups, Sampling(n=N, temperature=1.0, seed=seed))
    # ranks 0,1 form one group, ranks 2,3 the other: identical requests within a group, leader's seed
    assert engines[0].requests == engines[1].requests == [([0, 1, 10, 11], [100, 101, 110, 111], 1000)]
    assert engines[2].requests == engines[3].requests == [([20, 21, 30], [120, 121, 130], 1002)]
    for r in range(world):
        ids = [p.prompt_id for p in slices[r]]
        assert [x.prompt_id for x in got[r]] == [i for i in ids for _ in range(N)]  # own prompts, prompt-major
        assert [x.group_id for x in got[r]] == [100 + i for i in ids for _ in range(N)]
        assert [x.token_ids[1] for x in got[r]] == list(range(N)) * len(ids)


def test_tp_group_forwards_the_rest_of_the_engine():
    engine = RecordingEngine()
    engine.startup_metrics = lambda: {"time/engine_startup_s": 1.0}
    engine.shares_learner_weights = lambda: False
    wrapped = TPGroupEngine(engine, 2, DistContext())
    assert wrapped.startup_metrics() == {"time/engine_startup_s": 1.0} and not wrapped.shares_learner_weights()
    assert (wrapped.name, wrapped.pad_id) == ("fake", 0)


def test_tensor_parallel_needs_a_multiple_of_its_size_in_ranks_and_vllm(compose):
    cfg = compose(["rollout.tensor_parallel_size=2", "learner=zero2"])
    with pytest.raises(ConfigError, match=r"rollout.tensor_parallel_size=2 needs a multiple of 2 launched ranks"):
        check_topology(cfg, DistContext())
    with pytest.raises(ConfigError, match=r"got 3"):
        check_topology(cfg, DistContext(rank=0, world_size=3))
    check_topology(cfg, DistContext(rank=0, world_size=4))  # 2 TP groups of 2
    with pytest.raises(ConfigError, match="tensor_parallel_size > 1 shards a vLLM engine"):
        rollout.resolve_backend(compose(["rollout=hf", "rollout.tensor_parallel_size=2"]))
