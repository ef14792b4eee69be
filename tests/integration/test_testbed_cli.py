"""The testbed through the real CLI: format/correctness metrics, difficulty profile files, OOD eval, a short
reasoning_gym run, and `build-model task=...`. Run: pytest -m slow tests/integration/test_testbed_cli.py"""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.integration.test_train_cli import read_metrics, run_cli

pytestmark = pytest.mark.slow


def test_smoke_run_reports_format_difficulty_and_ood(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    args = ["train", "experiment=smoke", f"model.path={tiny_model_dir}", f"hydra.run.dir={run_dir}"]
    args += ["eval.difficulty_prompts=6", "eval.difficulty_samples=4", "task.arith.ood_eval_prompts=8"]
    p = run_cli(args, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    row = read_metrics(run_dir)[-1]
    assert 0 <= row["rollout/format_ok_frac"] <= 1 and 0 <= row["rollout/correct_given_format"] <= 1
    assert row["rollout/solve_rate"] == pytest.approx(
        row["rollout/format_ok_frac"] * row["rollout/correct_given_format"]
    )
    for tag in ("start", "end"):
        prof = json.loads((run_dir / f"difficulty_{tag}.json").read_text())
        assert prof["k"] == 4 and len(prof["prompt_ids"]) == 6 and sum(prof["histogram"]["counts"]) == 6
        assert (run_dir / f"difficulty_{tag}.png").is_file()
        assert f"difficulty ({tag}): 6 training prompts x 4 samples" in p.stdout
    start = json.loads((run_dir / "difficulty_start.json").read_text())
    assert start["prompt_ids"] == json.loads((run_dir / "difficulty_end.json").read_text())["prompt_ids"]
    evals = [json.loads(x) for x in (run_dir / "eval.jsonl").read_text().splitlines()]
    assert {"eval/toy_arith_ood/mean@4", "eval/toy_arith_ood/format_ok", "eval/toy_arith/correct_given_format"} <= set(
        evals[-1]
    )
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "difficulty/frac_mixed (start)" in summary and "difficulty/frac_mixed (end)" in summary


def test_reasoning_gym_run_end_to_end(tmp_path, tiny_model_dir):
    pytest.importorskip("reasoning_gym")
    run_dir = tmp_path / "rg"
    args = ["train", "experiment=smoke", "task=reasoning_gym", "task.rg.dataset=basic_arithmetic"]
    args += ["task.rg.config={max_terms: 2, max_digits: 1}", "task.rg.train_size=64", "task.rg.eval_size=8"]
    args += [f"model.path={tiny_model_dir}", f"hydra.run.dir={run_dir}", "task.reward_workers=1"]
    p = run_cli(args, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = read_metrics(run_dir)
    assert len(rows) == 4 and rows[-1]["rollout/reward_errors"] == 0 and rows[-1]["rollout/reward_timeouts"] == 0
    assert "rollout/format_ok_frac" in rows[-1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "eval/rg_basic_arithmetic/mean@4 (end)" in summary


def test_build_model_warm_starts_on_the_named_task(tmp_path, monkeypatch, capsys):
    pytest.importorskip("reasoning_gym")
    import two_grpo.models.tiny_model as tm
    from two_grpo.cli import main

    real = tm.recipe_for
    monkeypatch.setattr(tm, "recipe_for", lambda task: dataclasses.replace(real(task), sft_steps=3, sft_batch=8))
    cache = tmp_path / "cache"
    args = ["build-model", "task=reasoning_gym", "task.rg.dataset=chain_sum", f"model.tiny_cache_dir={cache}"]
    assert main(args) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert "tiny-reasoning_gym-" in out
    recipe = json.loads((tmp_path / "cache" / out.split("/")[-1] / "two_grpo_recipe.json").read_text())
    assert json.loads(recipe["task"])["rg"]["dataset"] == "chain_sum"
    assert main(["build-model", "task=math", "task.data.path=x.jsonl", f"model.tiny_cache_dir={cache}"]) == 2
    assert "no gold-answer generator" in capsys.readouterr().err
