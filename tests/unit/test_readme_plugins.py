"""The README shows what issue 16 promises a TRL / verl user: the reward plug-in, a LoRA run, Hydra's `-m`, the
table of peer names (exactly the one the CLI's hints use), and why two engines' evals differ."""

from __future__ import annotations

from pathlib import Path

from two_grpo.config import peer_names

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end > 0 else None]


def test_the_peer_names_table_in_the_readme_is_the_one_the_cli_uses():
    # after editing two_grpo/config/peer_names.py, paste the output of
    # python -c "from two_grpo import peer_names; print(peer_names.markdown_table())"
    assert peer_names.markdown_table() in README
    for name in ("learning_rate", "num_generations", "beta", "epsilon_high", "max_completion_length"):
        assert f"| TRL `{name}` |" in README


def test_your_data_section_shows_the_reward_plugin_and_a_lora_run():
    text = section("Your data, rewards and tasks")
    assert "two-grpo train task.reward_fn=" in text and "task.reward_weights=" in text
    assert "model.lora.r=" in text and "two-grpo train rollout=hf task.reward_fn=even.py:even_last_digit" in text
    assert "task.module=" in text and "task.data.eval_frac=" in text


def test_readme_shows_dash_m_lora_and_the_engine_difference():
    assert "two-grpo train -m group_size=2,16 seed=0,1,2" in README
    assert "two-grpo train model.lora.r=" in README
    assert "Two engines give different numbers for the same weights and seed" in README
