"""Data as users bring it (issue 16): TRL chat prompts, non-string prompts refused with file:line, verl's nested
fields, the seeded eval_frac split, and the plain no-eval warning."""

from __future__ import annotations

import json

import pytest

from two_grpo.config.schema import ConfigError, DataConfig, TaskConfig
from two_grpo.data.batch import Prompt
from two_grpo.data.gate import gate_train_set, get_field
from two_grpo.models.tiny_model import build_tokenizer
from two_grpo.tasks.math_task import MathTask


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def write_jsonl(path, rows, blank_after_first=False):
    lines = [json.dumps(r) for r in rows]
    if blank_after_first:
        lines.insert(1, "")
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_chat_messages_go_through_the_chat_template(tmp_path, tok):
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+3?"}]
    path = write_jsonl(tmp_path / "trl.jsonl", [{"prompt": msgs, "solution": "5"}, {"prompt": "1+1=", "solution": "2"}])
    task = MathTask(DataConfig(path=path, prompt_field="prompt", answer_field="solution"), tok)
    chat, plain = task.train_prompts()
    # the tiny model's template: each message's content on its own line, then "A: "
    assert (
        chat.text
        == "Be brief.\nWhat is 2+3?\nA: "
        == tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    )
    assert "role" not in chat.text and "[{" not in chat.text
    assert chat.question == "Be brief.\nWhat is 2+3?" and chat.answer == "5"
    assert plain.text.startswith("1+1=\nPlease reason step by step")  # string prompts keep the template


def test_chat_prompts_need_a_chat_template(tmp_path, tok):
    path = write_jsonl(tmp_path / "trl.jsonl", [{"prompt": [{"role": "user", "content": "hi"}], "solution": "5"}])
    tok2 = build_tokenizer()
    tok2.chat_template = None
    with pytest.raises(ConfigError, match="no chat template"):
        MathTask(DataConfig(path=path, prompt_field="prompt", answer_field="solution"), tok2)


@pytest.mark.parametrize(
    "bad, what",
    [
        (42, "is a int, not a string or a list of"),
        ({"role": "user", "content": "x"}, "is a dict, not a string"),
        ([{"role": "user"}], "is a list but not a list of"),
        (["a", "b"], "is a list but not a list of"),
    ],
)
def test_other_non_string_prompts_are_refused_naming_file_and_line(tmp_path, tok, bad, what):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"p": "1+1=", "a": "2"}, {"p": bad, "a": "3"}], blank_after_first=True)
    with pytest.raises(ConfigError) as exc:
        MathTask(DataConfig(path=path, prompt_field="p", answer_field="a"), tok)
    msg = str(exc.value)
    assert msg.startswith(f"{path}:3: record 2: 'p' ") and what in msg and "\n" not in msg  # line 3: a blank line 2


def test_nested_fields_and_row_fields_for_rewards(tmp_path, tok):
    row = {
        "data_source": "gsm8k",
        "prompt": [{"role": "user", "content": "What is 4+4?"}],
        "reward_model": {"style": "rule", "ground_truth": "8"},
        "extra_info": {"index": 7, "split": "train"},
    }
    path = write_jsonl(tmp_path / "verl.jsonl", [row])
    cfg = DataConfig(path=path, prompt_field="prompt", answer_field="reward_model.ground_truth")
    (p,) = MathTask(cfg, tok).train_prompts()
    assert p.answer == "8"
    assert p.fields == {"data_source": "gsm8k", "extra_info": {"index": 7, "split": "train"}}
    assert get_field({"a.b": 1, "a": {"b": 2}}, "a.b") == 1  # a literal dotted key wins over the path
    with pytest.raises(ConfigError, match="record 1 has no field 'reward_model.truth'"):
        MathTask(DataConfig(path=path, prompt_field="prompt", answer_field="reward_model.truth"), tok)


def test_eval_frac_is_a_seeded_disjoint_split(tmp_path, tok):
    rows = [{"problem": f"What is {i} plus {i} in the ring of integers here?", "answer": str(2 * i)} for i in range(40)]
    path = write_jsonl(tmp_path / "t.jsonl", rows)
    cfg = DataConfig(path=path, eval_frac=0.1, use_chat_template=False)
    a, b = MathTask(cfg, tok), MathTask(cfg, tok)
    train, held = a.train_prompts(), a.eval_prompts(100)
    assert len(train) == 36 and len(held) == 4
    assert {p.question for p in train}.isdisjoint(p.question for p in held)
    assert {p.question for p in train} | {p.question for p in held} == {r["problem"] for r in rows}
    assert [p.question for p in held] == [p.question for p in b.eval_prompts(100)]  # same file, same split
    assert [p.prompt_id for p in train] == list(range(36)) and [p.prompt_id for p in held] == list(range(4))
    full = MathTask(DataConfig(path=path, use_chat_template=False), tok).train_prompts()
    assert len(full) == 40 and not MathTask(DataConfig(path=path), tok).eval_prompts(100)
    _, report = gate_train_set(TaskConfig(name="math", data=cfg), train, held)
    assert report.overlapping == 0 and report.eval_prompts == 4
    with pytest.raises(ConfigError, match="leaving none to train on"):
        MathTask(DataConfig(path=write_jsonl(tmp_path / "one.jsonl", rows[:1]), eval_frac=0.5), tok)


def test_eval_frac_config_checks(compose):
    with pytest.raises(ConfigError, match="both set; choose one"):
        compose(["task=jsonl", "task.data.path=x.jsonl", "task.data.eval_path=y.jsonl", "task.data.eval_frac=0.05"])
    with pytest.raises(ConfigError, match=r"must be in \[0, 1\)"):
        compose(["task=jsonl", "task.data.path=x.jsonl", "task.data.eval_frac=1.5"])


def test_no_eval_set_is_said_plainly(capsys):
    cfg = TaskConfig(name="math", data=DataConfig(path="train.jsonl"))
    train = [Prompt(prompt_id=i, text=f"q{i}", answer="1", question=f"q{i}") for i in range(3)]
    gate_train_set(cfg, train, [])
    out = capsys.readouterr()
    assert "0 overlap" not in out.out and "no eval set (overlap not checked)" in out.out
    (warning,) = out.err.strip().splitlines()
    assert warning.startswith("two-grpo: warning: no held-out eval: task.data.eval_path is not set")
    assert "task.data.eval_frac=0.05" in warning
