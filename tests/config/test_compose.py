"""Every experiment composes and validates; derived sizes; one-line errors. Run: pytest tests/config"""

from pathlib import Path

import pytest

from two_grpo.cli import main
from two_grpo.config.compose import conf_dir
from two_grpo.config.schema import ConfigError, derive

EXPERIMENTS = sorted(p.stem for p in (Path(conf_dir()) / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_composes_and_validates(compose, name):
    cfg = compose([f"experiment={name}"])
    assert cfg.experiment_name == name


def test_paper_presets_hold_the_paper_settings(compose):
    g16 = compose(["experiment=paper_16grpo"])
    g2 = compose(["experiment=paper_2grpo"])
    assert (g16.group_size, g16.prompts_per_minibatch, g16.lr) == (16, 32, 1e-6)
    assert (g2.group_size, g2.prompts_per_minibatch, g2.lr) == (2, 256, 8e-6)
    for c in (g16, g2):
        assert (c.algo.clip_low, c.algo.clip_high) == (0.2, 0.28)
        assert (c.rollout.temperature, c.rollout.top_p, c.rollout.max_response_tokens) == (1.0, 1.0, 3072)
        assert c.rollout.max_prompt_tokens + c.eval.max_response_tokens <= 4096  # Qwen2.5-Math-1.5B positions
        assert (c.learner.warmup_steps, c.budget.max_epochs, c.model.path) == (10, 10, "Qwen/Qwen2.5-Math-1.5B")
        assert c.task.name == "math"
        assert not c.rollout.enforce_eager  # GPU runs: vLLM's compiled model and CUDA graphs
    # both see 512 rollouts per mini-batch; 16-GRPO takes 16 updates per 512-prompt rollout batch, 2-GRPO takes 2
    d16, d2 = derive(g16, 7500), derive(g2, 7500)
    assert d16.rollouts_per_minibatch == d2.rollouts_per_minibatch == 512
    assert (d16.updates_per_rollout_batch, d2.updates_per_rollout_batch) == (16, 2)
    # 10 epochs of 7500 prompts at 512 prompts per rollout batch = ceil(146.48) = 147 rollout batches
    assert (d16.total_steps, d2.total_steps) == (147 * 16, 147 * 2)


def test_headline_overrides(compose):
    cfg = compose(["group_size=2", "lr=8e-6"])
    assert cfg.group_size == 2 and cfg.lr == 8e-6


def test_derived_sizes_by_budget_mode(compose):
    cfg = compose(["prompts_per_rollout=64", "prompts_per_minibatch=16", "group_size=4", "budget.max_steps=100"])
    d = derive(cfg, 1000)
    assert (d.rollouts_per_minibatch, d.rollouts_per_rollout_batch, d.updates_per_rollout_batch) == (64, 256, 4)
    assert d.total_steps == 100
    cfg = compose(
        [
            "prompts_per_rollout=64",
            "prompts_per_minibatch=16",
            "group_size=4",
            "budget=rollouts",
            "budget.max_rollouts=2560",
        ]
    )
    assert derive(cfg, 1000).total_steps == 40  # 2560 / 256 = 10 rollout batches x 4 updates


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["prompts_per_rollout=48", "prompts_per_minibatch=32"], "must be divisible by prompts_per_minibatch"),
        (["group_size=1"], "group_size=1 must be >= 2"),
        (["algo.loss_agg=mean"], "choose one of: token_mean, seq_mean_token_mean, seq_mean_token_sum"),
        (["budget.max_steps=0"], "no stopping limit"),
        (["task=math", "task.data.path="], "task.data.path is empty"),
    ],
)
def test_validate_messages(compose, overrides, message):
    with pytest.raises(ConfigError, match=message):
        compose(overrides)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["grop_size=2"], "unknown config key 'grop_size': did you mean 'group_size'?"),
        (["learner.micro_rolouts=4"], "did you mean 'learner.micro_rollouts'?"),
        (["lr=fast"], "lr='fast': wrong type, expected float"),
        (
            ["algo.advantage=ppo"],
            "algo.advantage='ppo' is not allowed; choose one of: grpo, dr_grpo, batch_std, sign, rloo",
        ),
        (["algo=nope"], "algo=nope: no such config; choose one of:"),
    ],
)
def test_cli_errors_are_one_line_with_exit_2(capsys, argv, needle):
    assert main(["train", *argv, "--cfg", "job"]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err
    assert len(err.splitlines()) == 1


def test_cfg_job_prints_the_config(capsys):
    assert main(["train", "group_size=2", "lr=8e-6", "--cfg", "job"]) == 0
    out = capsys.readouterr().out
    assert "group_size: 2\n" in out and "lr: 8.0e-06\n" in out
