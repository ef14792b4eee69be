"""eval_outcomes.jsonl: one line per eval prompt with its k rewards, gathered over ranks; the eval cadence in
rollouts. Fake engine and scorer, no model. Run: pytest tests/unit/test_eval_outcomes.py"""

import json
from types import SimpleNamespace

import pytest

from two_grpo.config.schema import TrainConfig
from two_grpo.data.batch import Prompt, Rollout
from two_grpo.study.evaluate import Evaluator, evaluate_suite
from two_grpo.tasks.rewards import ScoreReport


class FakeEngine:
    """Prompt i's j-th sample answers 'ok' when j < prompt_id % (k+1): known per-prompt rewards."""

    def generate(self, prompts, group_ids, sampling):
        return [
            Rollout(g, p.prompt_id, [1], [2], "ok" if j < p.prompt_id % (sampling.n + 1) else "no", "stop")
            for p, g in zip(prompts, group_ids)
            for j in range(sampling.n)
        ]


class FakeScorer:
    task = SimpleNamespace(name="arith")

    def score(self, rollouts, prompts):
        return ScoreReport([1.0 if r.text == "ok" else 0.0 for r in rollouts])


def suite(n=5):
    from two_grpo.study.evaluate import Benchmark

    return [Benchmark("arith", [Prompt(prompt_id=10 + i, text="q", answer="a") for i in range(n)], FakeScorer())]


def test_outcomes_hold_each_prompts_k_rewards_and_agree_with_mean_at_k():
    cfg = TrainConfig()
    cfg.eval.samples_per_prompt = 3
    out = []
    metrics = evaluate_suite(FakeEngine(), suite(), cfg, seed=0, outcomes=out)
    # prompt ids 10..14 -> solved samples 10%4=2, 3, 0, 1, 2 of 3
    assert [o["prompt_id"] for o in out] == [10, 11, 12, 13, 14]
    assert [sum(o["rewards"]) for o in out] == [2, 3, 0, 1, 2]
    assert all(len(o["rewards"]) == 3 and o["benchmark"] == "arith" for o in out)
    assert metrics["eval/arith/mean@3"] == pytest.approx(8 / 15)


class TwoRankDist:
    """Rank 0 of a simulated 2-rank job: rank 1 evaluated prompts 13, 14 (its outcomes come back gathered)."""

    active, world_size, rank = True, 2, 0

    def __init__(self, other):
        self.other = other

    def all_gather_object(self, obj):
        if isinstance(obj, tuple):  # sharded_eval's (metrics, n)
            return [obj, (obj[0], 0)]
        return [obj, self.other]


def test_outcomes_are_gathered_from_every_rank():
    cfg = TrainConfig()
    cfg.eval.samples_per_prompt = 2
    other = [{"benchmark": "arith", "prompt_id": 99, "rewards": [1.0, 0.0]}]
    out = []
    evaluate_suite(FakeEngine(), suite(2), cfg, seed=0, dist=TwoRankDist(other), outcomes=out)
    assert [o["prompt_id"] for o in out] == [10, 99]  # rank 0 took the first half (prompt 10), rank 1 the rest


def test_evaluator_writes_one_line_per_prompt_with_budget_and_due_in_rollouts(tmp_path):
    cfg = TrainConfig()
    cfg.eval.samples_per_prompt, cfg.eval.every_rollouts = 2, 256
    path = tmp_path / "eval_outcomes.jsonl"
    ev = Evaluator(cfg, suite(3), tracker=None, outcomes_path=path)
    budget = SimpleNamespace(steps=7, rollouts=384, tokens=0, t_start=0.0)
    ev.run(FakeEngine(), budget, SimpleNamespace(total={}))
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert [(x["step"], x["rollouts"], x["prompt_id"]) for x in lines] == [(7, 384, 10), (7, 384, 11), (7, 384, 12)]
    assert lines[0]["rewards"] == [1.0, 0.0] and lines[1]["rewards"] == [1.0, 1.0]  # 10 % 3 = 1, 11 % 3 = 2
    assert ev.due(3, 4, 200, 300) and not ev.due(3, 4, 256, 500) and ev.due(3, 4, 500, 512)


def test_resume_cuts_eval_outcomes_back_to_the_checkpoint(tmp_path):
    from two_grpo.dist.context import DistContext
    from two_grpo.run.resume import prepare_resume

    lines = [{"step": s, "rollouts": 10 * s, "benchmark": "arith", "prompt_id": p, "rewards": [1.0]}
             for s in (0, 4, 8) for p in (1, 2)]  # fmt: skip
    (tmp_path / "eval_outcomes.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    ckpt = SimpleNamespace(step=4, path=tmp_path / "checkpoints" / "step_4")
    ckpts = SimpleNamespace(clean_partial=lambda: [], latest=lambda: ckpt)
    assert prepare_resume(tmp_path, ckpts, DistContext()) is ckpt
    kept = [json.loads(x) for x in (tmp_path / "eval_outcomes.jsonl").read_text().splitlines()]
    assert [(x["step"], x["prompt_id"]) for x in kept] == [(0, 1), (0, 2), (4, 1), (4, 2)]  # step 8 is redone
