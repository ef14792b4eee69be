"""task=reasoning_gym: seeded prompts, the library's own verifier (in the scoring pool), warm-start pairs."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("reasoning_gym")

from two_grpo.config.schema import ConfigError, RGConfig  # noqa: E402
from two_grpo.tasks.reasoning_gym_task import ReasoningGymTask, extract_answer, rg_score  # noqa: E402


def _task(**kw) -> ReasoningGymTask:
    return ReasoningGymTask(
        RGConfig(dataset="chain_sum", config={"max_terms": 3, "max_digits": 2}, train_size=50, eval_size=10, **kw)
    )


def test_prompts_are_seeded_and_scored_by_the_library():
    a, b = _task(), _task()
    assert [p.text for p in a.train_prompts()] == [p.text for p in b.train_prompts()]
    assert [p.text for p in _task(seed=1).train_prompts()] != [p.text for p in a.train_prompts()]
    p = a.eval_prompts(10)[0]
    gold = json.loads(p.answer)["entry"]["answer"]
    assert p.text.startswith(json.loads(p.answer)["entry"]["question"])
    assert rg_score(p.answer, f" {gold}") == 1.0
    assert rg_score(p.answer, f"<answer>{gold}</answer>") == 1.0
    assert rg_score(p.answer, str(int(gold) + 1)) == 0.0
    assert rg_score(p.answer, "") == 0.0 and rg_score("1", "1") == 0.0  # malformed gold (the pool's warm-up)
    assert a.name == "rg_chain_sum" and a.sandboxed


def test_extract_and_format():
    assert extract_answer("x <answer> 7 </answer>") == "7"
    assert extract_answer(" 12 ") == "12"
    assert extract_answer("1\n2") is None and extract_answer("  ") is None
    assert _task().format_ok("5") and not _task().format_ok("")


def test_splits_do_not_overlap():
    """reasoning-gym's item i of seed s is Random(s + i): nearby seeds would make eval a shifted copy of train."""
    t = ReasoningGymTask(RGConfig(dataset="chain_sum", train_size=300, eval_size=300))
    assert len(t.train_prompts()) > 295  # (a chance collision or two of short questions aside)
    assert len(t.sft_pairs(300, seed=0)) == 300
    assert len({q for q, _ in t.sft_pairs(300, seed=0)}) > 250


def test_sft_pairs_avoid_eval_questions():
    t = _task()
    held = {p.question for p in t.eval_prompts(10)}
    pairs = t.sft_pairs(40, seed=0)
    assert len(pairs) == 40 and all(str(int(a)) == a for _, a in pairs)
    assert not {q.removesuffix("\nA: ") for q, _ in pairs} & held


def test_scoring_pool_runs_the_verifier():
    from two_grpo.data.batch import Rollout
    from two_grpo.tasks.rewards import RewardScorer

    t = _task()
    prompts = t.eval_prompts(3)
    gold = [json.loads(p.answer)["entry"]["answer"] for p in prompts]
    rollouts = [
        Rollout(group_id=i, prompt_id=p.prompt_id, prompt_token_ids=[], token_ids=[], text=txt, finish_reason="stop")
        for i, (p, txt) in enumerate(zip(prompts, [gold[0], "nope", gold[2]]))
    ]
    scorer = RewardScorer(t, 10.0, 1)
    try:
        assert scorer.score(rollouts, {p.prompt_id: p for p in prompts}).rewards == [1.0, 0.0, 1.0]
    finally:
        scorer.close()


def test_unknown_dataset_is_a_config_error():
    with pytest.raises(ConfigError, match="task.rg.dataset='no_such_thing'"):
        ReasoningGymTask(RGConfig(dataset="no_such_thing", train_size=5, eval_size=0))
