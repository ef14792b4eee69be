"""`two-grpo eval` on a model folder with a local benchmark file (offline) and on a finished run's final/.
Run: pytest -m slow tests/integration/test_eval_cli.py"""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def run_cli(args, cwd):
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "two_grpo.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


def test_eval_a_model_on_a_local_benchmark_file_and_a_run(tmp_path, tiny_model_dir, capsys, monkeypatch):
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"question": f"{a}+{a}=", "gold": [str(2 * a)]}) + "\n" for a in range(6)))
    p = run_cli(
        [
            "eval",
            str(tiny_model_dir),
            "eval=local_file",
            f"eval.benchmarks.local.path={bench}",
            "eval.benchmarks.local.prompt_field=question",
            "eval.benchmarks.local.answer_field=gold",  # a list: its first element is the gold answer
            "eval.prompts=6",  # plus the held-out split of the training task: two benchmarks and their average
            "eval.samples_per_prompt=2",
            "eval.max_response_tokens=6",
            "task.data.use_chat_template=false",
            "task.data.template='{problem}'",
        ],
        tmp_path,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(next((tmp_path / "runs").glob("eval-*/eval.json")).read_text())["metrics"]
    for bench_name in ("local", "toy_arith", "avg"):
        for metric in ("mean@2", "pass@2"):
            assert 0.0 <= out[f"eval/{bench_name}/{metric}"] <= 1.0
    assert out["eval/avg/mean@2"] == pytest.approx((out["eval/local/mean@2"] + out["eval/toy_arith/mean@2"]) / 2)
    assert out["eval/local/pass@2"] >= out["eval/local/mean@2"]  # pass@k >= mean@k for binary rewards
    assert "pass@2" in p.stdout

    from two_grpo.cli import main  # a config error: the entry point in-process (no interpreter start-up)

    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["eval", str(tiny_model_dir), "eval=local_file"]) == 2
    err = capsys.readouterr().err
    assert "eval.benchmarks.local.path" in err and len(err.strip().splitlines()) == 1

    run_dir = tmp_path / "run"
    t = run_cli(
        ["train", "experiment=smoke", f"model.path={tiny_model_dir}", f"hydra.run.dir={run_dir}", "budget.max_steps=2"],
        tmp_path,
    )
    assert t.returncode == 0, t.stderr[-3000:]
    assert (run_dir / "final" / "model.safetensors").is_file()
    assert [json.loads(x)["step"] for x in (run_dir / "eval.jsonl").read_text().splitlines()] == [0, 2]
    e = run_cli(["eval", str(run_dir), "eval.samples_per_prompt=2", "eval.temperature=1.0"], tmp_path)
    assert e.returncode == 0, e.stderr[-3000:]
    saved = json.loads(next((run_dir / "eval").glob("eval-*.json")).read_text())
    assert saved["model"].endswith("final") and "eval/toy_arith/pass@2" in saved["metrics"]
