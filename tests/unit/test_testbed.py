"""The testbed (issue 14 part 1): problem shapes, OOD split, format vs correctness, difficulty profile, model key."""

from __future__ import annotations

import json
import random
import re

import pytest

from two_grpo.config.schema import ArithConfig, EvalConfig, TaskConfig
from two_grpo.data.batch import Prompt, Rollout
from two_grpo.data.difficulty import from_counts, pick_prompts, summary_line, write
from two_grpo.data.format_split import format_counts, format_metrics
from two_grpo.tasks.toy_arith import ToyArithTask, format_ok, make_problem


def _operands(q: str) -> list[str]:
    return [t for t in re.split(r"[+\-*=]", q) if t]


def test_problems_are_correct_and_span_the_shapes():
    cfg = ArithConfig(max_digits=3, operators="+-*", chain_frac=0.3)
    rng = random.Random(0)
    probs = [make_problem(rng, cfg) for _ in range(3000)]
    lengths = {len(t) for q, _ in probs for t in _operands(q)}
    assert lengths == {1, 2, 3}
    for q, a in probs:
        assert eval(q[:-1]) == int(a), q  # the gold answer is the value of the expression
        if "*" in q:
            assert len(_operands(q)[1]) == 1  # mul_max_digits=1
    ops = {("*" if "*" in q else "chain" if len(_operands(q)) == 3 else "+-") for q, _ in probs}
    assert ops == {"*", "chain", "+-"}
    chains = sum(len(_operands(q)) == 3 for q, _ in probs)
    plus_minus = sum("*" not in q for q, _ in probs)
    assert 0.25 < chains / plus_minus < 0.35


def test_range_mode_keeps_the_old_operands():
    cfg = ArithConfig(max_digits=0, min_operand=0, max_operand=9, operators="+")
    rng = random.Random(1)
    assert all(0 <= int(t) <= 9 for _ in range(200) for t in _operands(make_problem(rng, cfg)[0]))


def test_splits_are_disjoint_and_ood_has_longer_operands():
    task = ToyArithTask(ArithConfig(train_prompts=500, eval_prompts=64, ood_eval_prompts=32))
    train = {p.question for p in task.train_prompts()}
    held = {p.question for p in task.eval_prompts(64)}
    ood = task.extra_eval_splits()["toy_arith_ood"]
    assert len(ood) == 32 and not (train & held) and not (train & {p.question for p in ood})
    assert max(len(t) for p in ood for t in _operands(p.question)) == 3  # training operands 0-99: 1-2 digits
    assert max(len(t) for p in task.train_prompts() for t in _operands(p.question)) == 2
    assert min(len(_operands(p.question)[0]) for p in ood) >= 2  # every first operand got one more digit
    assert not ToyArithTask(ArithConfig(train_prompts=10, ood_eval_prompts=0)).extra_eval_splits()
    sft = task.sft_pairs(2000, seed=0)
    assert not {q for q, _ in sft} & (held | {p.question for p in ood})


@pytest.mark.parametrize(
    "text, ok", [("46", True), (" -7 ", True), ("46 46", False), ("", False), ("4a", False), ("1" * 70, False)]
)
def test_format_ok(text, ok):
    assert format_ok(text) is ok


def test_format_split_is_hand_checked():
    task = ToyArithTask(ArithConfig(train_prompts=1, eval_prompts=1, ood_eval_prompts=0))
    counts = format_counts(task, ["1", "x", "2", "3"], [1.0, 0.0, 0.0, 1.0])
    assert counts == (4, 3, 2)
    m = format_metrics(counts, "rollout", "format_ok_frac")
    assert m == {"rollout/format_ok_frac": 0.75, "rollout/correct_given_format": pytest.approx(2 / 3)}
    assert format_metrics((2, 0, 0), "eval/x", "format_ok") == {
        "eval/x/format_ok": 0.0,
        "eval/x/correct_given_format": 0.0,
    }
    assert format_counts(object(), ["1"], [1.0]) is None  # a task without format_ok: no split


def test_difficulty_profile_schema_and_numbers(tmp_path):
    prof = from_counts([5, 6, 7, 8], [0, 4, 8, 1], k=8)
    assert prof["solve_rates"] == [0.0, 0.5, 1.0, 0.125]
    assert prof["frac_mixed"] == 0.5  # 0.5 and 0.125 lie in (0.05, 0.95)
    assert prof["histogram"]["counts"] == [1, 1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert len(prof["histogram"]["bins"]) == 11 and prof["k"] == 8 and prof["correct"] == [0, 4, 8, 1]
    path = write(tmp_path, "start", prof)
    assert json.loads(path.read_text())["prompt_ids"] == [5, 6, 7, 8]
    assert (tmp_path / "difficulty_start.png").is_file()
    assert "50% mixed" in summary_line("start", prof)


def test_difficulty_subset_is_fixed_by_the_training_set():
    train = [Prompt(prompt_id=i, text=str(i), answer=str(i)) for i in range(100)]
    a = pick_prompts(train, 10)
    random.seed(99)  # the run seed does not move the subset
    assert [p.prompt_id for p in pick_prompts(train, 10)] == [p.prompt_id for p in a]
    assert len({p.prompt_id for p in a}) == 10 and pick_prompts(train[:5], 10) == train[:5]


class _EchoEngine:
    """Answers every prompt with the texts in `answers[prompt.text]` (k of them)."""

    name, pad_id = "echo", 0

    def __init__(self, answers):
        self.answers = answers

    def generate(self, prompts, group_ids, sampling):
        return [
            Rollout(group_id=g, prompt_id=p.prompt_id, prompt_token_ids=[], token_ids=[1], text=t, finish_reason="stop")
            for p, g in zip(prompts, group_ids)
            for t in self.answers[p.text][: sampling.n]
        ]


def test_eval_reports_format_split_and_ood_beside_the_held_out_split(compose):
    from two_grpo.data.difficulty import measure
    from two_grpo.study.evaluate import evaluate_suite, load_benchmarks
    from two_grpo.tasks.rewards import RewardScorer

    cfg = compose(["task.arith.eval_prompts=4", "task.arith.ood_eval_prompts=3", "eval.samples_per_prompt=2"])
    task = ToyArithTask(cfg.task.arith)
    scorer = RewardScorer(task, 1.0, 1)
    suite = load_benchmarks(cfg, None, task, scorer)
    assert [b.name for b in suite] == ["toy_arith", "toy_arith_ood"]
    answers = {p.text: [p.answer, "oops"] for b in suite for p in b.prompts}  # one right, one malformed each
    out = evaluate_suite(_EchoEngine(answers), suite, cfg, seed=0)
    for name in ("toy_arith", "toy_arith_ood"):
        assert out[f"eval/{name}/mean@2"] == 0.5
        assert out[f"eval/{name}/format_ok"] == 0.5 and out[f"eval/{name}/correct_given_format"] == 1.0
    assert "eval/avg/mean@2" not in out  # the OOD split is reported beside, not averaged in
    train = task.train_prompts()[:6]
    prof = measure(_EchoEngine({p.text: [p.answer, p.answer, "x", "x"] for p in train}), scorer, train, 4, 1.0, 8, 0)
    assert prof["correct"] == [2] * 6 and prof["frac_mixed"] == 1.0
    assert EvalConfig().difficulty_prompts == 0


def test_model_key_follows_the_task_shapes_only():
    from two_grpo.config.schema import RGConfig
    from two_grpo.models.tiny_model import TinyRecipe, recipe_for

    assert recipe_for(None) == recipe_for(TaskConfig()) == TinyRecipe()
    assert recipe_for(TaskConfig(arith=ArithConfig(train_prompts=128, partial_credit=True))) == TinyRecipe()
    wider = recipe_for(TaskConfig(arith=ArithConfig(max_digits=4)))
    assert wider.key() != TinyRecipe().key() and wider.task_name() == "toy_arith"
    rg = recipe_for(TaskConfig(name="reasoning_gym", rg=RGConfig(dataset="basic_arithmetic")))
    assert rg.task_name() == "reasoning_gym" and rg.key() != TinyRecipe().key()
    assert recipe_for(TaskConfig(name="math")) == TinyRecipe()  # no gold generator: the default warm start


def test_model_key_is_the_same_for_the_default_task_spelt_out_or_left_empty(monkeypatch):
    """One recipe, one cache folder: `task=""` and the default task's spec written out (what recipe_for gave when
    the task config's defaults and ArithConfig's differed) share a key; a change of ArithConfig's defaults, which
    changes the warm-start data of `task=""`, changes the key."""
    import two_grpo.models.tiny_model as tm

    explicit = tm.TinyRecipe(task=tm.task_spec(None))
    assert explicit.key() == tm.TinyRecipe().key()
    before, real = tm.TinyRecipe().key(), tm.task_spec
    monkeypatch.setattr(tm, "task_spec", lambda cfg: real(cfg) if cfg is not None else '{"other": 1}')
    assert tm.TinyRecipe().key() != before


def test_digit_smoothed_nll_matches_the_hand_written_cross_entropies():
    """Vocabulary of 12 tokens, digits are ids 2..11 (digit d = id d+2); logits[v] = v/4 at every position."""
    import math

    import torch

    from two_grpo.models.tiny_model import digit_smoothed_nll

    digits = torch.arange(2, 12)
    logits = (torch.arange(12, dtype=torch.float32) / 4).expand(1, 3, 12).clone()
    logz = math.log(sum(math.exp(v / 4) for v in range(12)))
    nll = [logz - v / 4 for v in range(12)]  # -log p(v)
    targets = torch.tensor([[1, 2 + 5, 2 + 0]])  # a non-digit, the digit 5, the digit 0
    s = 0.4
    plain = digit_smoothed_nll(logits, targets, digits, 0.0)
    assert torch.allclose(plain, torch.tensor([[nll[1], nll[7], nll[2]]]))
    uniform = digit_smoothed_nll(logits, targets, digits, s)
    spread = sum(nll[2:]) / 10
    assert torch.allclose(uniform, torch.tensor([[nll[1], 0.6 * nll[7] + s * spread, 0.6 * nll[2] + s * spread]]))
    neigh = digit_smoothed_nll(logits, targets, digits, s, to="neighbors")  # 5 -> 4, 6; 0 -> 9, 1 (mod 10)
    want = [nll[1], 0.6 * nll[7] + s * (nll[6] + nll[8]) / 2, 0.6 * nll[2] + s * (nll[11] + nll[3]) / 2]
    assert torch.allclose(neigh, torch.tensor([want]))
    only_last = digit_smoothed_nll(logits, targets, digits, s, at=torch.tensor([[False, False, True]]))
    assert torch.allclose(only_last, torch.tensor([[nll[1], nll[7], 0.6 * nll[2] + s * spread]]))


def test_last_answer_token_mask_marks_the_digit_before_eos():
    from two_grpo.models.tiny_model import build_tokenizer, last_answer_token_mask

    tok = build_tokenizer()
    rows = [tok.convert_tokens_to_ids(list(q + a)) + [tok.eos_token_id] for q, a in (("12+7=", "19"), ("3-5=", "-2"))]
    length = max(map(len, rows))
    at = last_answer_token_mask(rows, length)
    targets = [r[1:] for r in rows]
    assert [tok.convert_ids_to_tokens(t[j]) for t, m in zip(targets, at) for j in m.nonzero().flatten()] == ["9", "2"]


def test_smoothing_applies_from_its_step_on(monkeypatch, tmp_path):
    import two_grpo.models.tiny_model as tm

    seen, real = [], tm.digit_smoothed_nll
    monkeypatch.setattr(tm, "digit_smoothed_nll", lambda *a: seen.append(a[3]) or real(*a))
    recipe = tm.TinyRecipe(
        sft_steps=4, sft_batch=4, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        digit_smoothing=0.5, smoothing_from_step=2,
    )  # fmt: skip
    tm.build(tmp_path / "m", recipe)
    assert seen == [0.0, 0.0, 0.5, 0.5]
