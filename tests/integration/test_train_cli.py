"""End-to-end CPU runs through the real CLI. Run: pytest -m slow tests/integration/test_train_cli.py"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from two_grpo.run.tracking import STEP_KEYS

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def run_cli(args, cwd, env_extra=None, timeout=600):
    env = {**os.environ, "WANDB_MODE": "offline", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "two_grpo.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def read_metrics(run_dir: Path):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_smoke_run_writes_every_output(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    p = run_cli(
        [
            "train",
            "experiment=smoke",
            f"model.path={tiny_model_dir}",
            f"hydra.run.dir={run_dir}",
            "logger=wandb",
            "learner.micro_rollouts=5",
        ],
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # smoke: P=8, M=4 -> 2 updates per rollout batch
    for key in STEP_KEYS:
        assert key in rows[-1], key
    assert rows[-1]["budget/rollouts_total"] == 2 * 8 * 4  # 2 rollout batches x 8 prompts x G=4
    assert rows[0]["time/rollout"] > 0 and rows[1]["time/rollout"] == 0  # phase time lands on the first update
    dump = (run_dir / "rollouts" / "step_000002.jsonl").read_text().splitlines()
    assert len(dump) == 32 and {"prompt", "completion", "reward", "advantage"} <= set(json.loads(dump[0]))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["optimizer_steps"] == 4 and summary["rollouts"] == 64
    assert (run_dir / "config.yaml").read_text().startswith("group_size: 4")
    assert json.loads((run_dir / "derived.json").read_text())["updates_per_rollout_batch"] == 2
    assert list((run_dir / "wandb").glob("offline-run-*")), "wandb offline run missing"
    assert "run summary" in p.stdout


def test_two_runs_started_together_never_share_a_dir(tmp_path, tiny_model_dir):
    cmd = [
        sys.executable,
        "-m",
        "two_grpo.cli",
        "train",
        "experiment=smoke",
        f"model.path={tiny_model_dir}",
        "budget.max_steps=1",
        "eval.prompts=0",
    ]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    runs = sorted((tmp_path / "runs").iterdir())
    assert len(runs) == 2 and all(len((r / "metrics.jsonl").read_text().splitlines()) == 1 for r in runs)


@pytest.mark.parametrize("args", [["group_size=2", "lr=8e-6"], ["group_size=16"]])
def test_headline_commands_run_as_written(tmp_path, tiny_model_dir, args):
    run_dir = tmp_path / "r"
    p = run_cli(
        [
            "train",
            *args,
            f"model.path={tiny_model_dir}",
            "budget.max_steps=2",  # two rollout batches (G=16: 512 rollouts each)
            "eval.prompts=8",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    rows = read_metrics(run_dir)
    group_size = int(args[0].split("=")[1])
    assert rows[-1]["budget/rollouts_total"] == 2 * 32 * group_size


def test_math_task_from_jsonl_and_parquet(tmp_path, tiny_model_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"question": f"What is {i} + {i}?", "final": str(2 * i)} for i in range(12)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "eval.parquet")
    run_dir = tmp_path / "mrun"
    p = run_cli(
        [
            "train",
            "experiment=smoke",
            "task=jsonl",
            f"task.data.path={tmp_path / 'train.jsonl'}",
            f"task.data.eval_path={tmp_path / 'eval.parquet'}",
            "task.data.prompt_field=question",
            "task.data.answer_field=final",
            f"model.path={tiny_model_dir}",
            f"hydra.run.dir={run_dir}",
            "eval.prompts=4",
        ],
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    rows_out = read_metrics(run_dir)
    assert rows_out[-1]["rollout/reward_timeouts"] == 0 and rows_out[-1]["rollout/reward_errors"] == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "eval/math/mean@4 (end)" in summary


def test_bad_input_fails_before_training(tmp_path):
    """The real process: exit 2 and one stderr line. Each message (this one, model.path's, a record missing its
    answer field and the others) is checked in-process by tests/fault/test_bad_input.py (test_bad_config_and_paths,
    test_bad_dataset), with no model loaded."""
    args = ["task=jsonl", "task.data.path=/nonexistent/x.jsonl"]
    p = run_cli(["train", "experiment=smoke", *args, f"hydra.run.dir={tmp_path / 'r'}"], cwd=tmp_path)
    assert p.returncode == 2
    assert "file not found" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "metrics.jsonl").exists()


def test_wheel_ships_the_configs(tmp_path):
    """A non-editable wheel install finds conf/ inside the package and runs from another directory."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("two_grpo-*.whl"))
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    assert (site / "two_grpo" / "conf" / "train.yaml").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    p = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, two_grpo.cli as c; print(c.__file__); sys.exit(c.main())",
            "train",
            "--cfg",
            "job",
        ],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
    )
    assert p.returncode == 0, p.stderr
    assert str(site) in p.stdout and "group_size: 8" in p.stdout
