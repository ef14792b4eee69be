"""Plug-in rewards (issue 16): task.reward_fn / task.reward_fns + task.reward_weights run user files in the scoring
pool, get the record's fields, are weighted and reported per function; bad specs and non-float returns are
one-line config errors; a raising function is a counted reward error."""

from __future__ import annotations

import pytest

from two_grpo.config.schema import ArithConfig, ConfigError, TaskConfig
from two_grpo.data.batch import Prompt, Rollout
from two_grpo.tasks.rewards import RewardScorer, plugin_parts
from two_grpo.tasks.toy_arith import ToyArithTask

REWARDS = """
def has_seven(completion, answer, **fields):
    return 1.0 if "7" in completion else 0.0

def exact(completion, answer, **fields):
    return float(completion.strip() == answer)

def from_extra(completion, answer, extra_info=None, **fields):
    return float(extra_info["bonus"])

def raises(completion, answer, **fields):
    raise RuntimeError("boom")

def text(completion, answer, **fields):
    return "1.0"
"""


@pytest.fixture
def reward_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(REWARDS)
    return path


def rollouts(texts):
    return [Rollout(group_id=0, prompt_id=i, prompt_token_ids=[], token_ids=[], text=t, finish_reason="stop")
            for i, t in enumerate(texts)]  # fmt: skip


PROMPTS = {
    0: Prompt(0, "3+4=", "7", fields={"extra_info": {"bonus": 0.5}}),
    1: Prompt(1, "1+1=", "2", fields={"extra_info": {"bonus": 0.25}}),
}


def scorer(cfg: TaskConfig) -> RewardScorer:
    return RewardScorer(ToyArithTask(ArithConfig(train_prompts=4, eval_prompts=2)), 5.0, 1, plugin_parts(cfg))


def test_weighted_rewards_with_row_fields_and_per_function_values(reward_file, capsys):
    cfg = TaskConfig(
        reward_fns=[f"{reward_file}:has_seven", "task", f"{reward_file}:from_extra"], reward_weights=[0.5, 2.0, 1.0]
    )
    s = scorer(cfg)
    try:
        report = s.score(rollouts(["7", "3"]), PROMPTS)
    finally:
        s.close()
    assert report.parts == {"has_seven": [1.0, 0.0], "task": [1.0, 0.0], "from_extra": [0.5, 0.25]}
    assert report.rewards == [0.5 * 1 + 2.0 * 1 + 0.5, 0.0 + 0.0 + 0.25]
    err = capsys.readouterr().err
    assert f"loading user code: reward function has_seven() from {reward_file}" in err
    assert err.count("has_seven()") == 1  # said once


def test_one_reward_fn_replaces_the_task_reward(reward_file):
    s = scorer(TaskConfig(reward_fn=f"{reward_file}:has_seven"))
    try:
        report = s.score(rollouts(["x7", "7"]), PROMPTS)  # the task's exact match would give [0, 0]
    finally:
        s.close()
    assert report.rewards == [1.0, 1.0] and report.parts == {"has_seven": [1.0, 1.0]}


def test_a_raising_reward_is_a_counted_error(reward_file):
    s = scorer(TaskConfig(reward_fn=f"{reward_file}:raises"))
    try:
        report = s.score(rollouts(["7", "2"]), PROMPTS)
    finally:
        s.close()
    assert report.rewards == [0.0, 0.0] and report.errors == 2 and "boom" in report.first_failures[0]["detail"]


def test_a_non_float_return_is_a_config_error_on_first_use(reward_file):
    s = scorer(TaskConfig(reward_fn=f"{reward_file}:text"))
    try:
        with pytest.raises(ConfigError) as exc:
            s.score(rollouts(["7"]), PROMPTS)
    finally:
        s.close()
    assert (
        str(exc.value)
        == f"reward {reward_file}:text returned str ('1.0'), not a float; the reward function must return a float"
    )


@pytest.mark.parametrize(
    "spec, msg",
    [
        ("nowhere/r.py:f", "no file"),
        ("{file}:missing", "has no function 'missing' (functions there: exact, from_extra, has_seven, raises, text)"),
    ],
)
def test_bad_paths_and_names_are_refused(reward_file, spec, msg):
    with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        plugin_parts(TaskConfig(reward_fn=spec.format(file=reward_file)))


@pytest.mark.parametrize(
    "overrides, msg",
    [
        (["task.reward_fn=r.txt:f"], "write it as path/to/file.py:function_name"),
        (["task.reward_fn=a.py:f", "task.reward_fns=[b.py:g]"], "both set"),
        (["task.reward_fns=[a.py:f,task]", "task.reward_weights=[1.0]"], "give one weight per function"),
        (["+task.options._target_=os.system"], "object instantiation from config is not supported"),
    ],
)
def test_reward_config_checks(compose, overrides, msg):
    with pytest.raises(ConfigError) as exc:
        compose(overrides)
    assert msg in str(exc.value)
