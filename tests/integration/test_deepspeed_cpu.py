"""DeepSpeed ZeRO on CPU with gloo: invariance of one optimizer step to the number of ranks, the ZeRO stage and
the learner backend, and two-rank training runs through the real CLI (torchrun and the deepspeed launcher).
Run: pytest -m slow tests/integration/test_deepspeed_cpu.py  (the first DeepSpeed run JIT-builds a comm op,
~30-60 s, cached under TORCH_EXTENSIONS_DIR)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepspeed")
import torch  # noqa: E402

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def env() -> dict[str, str]:
    return {
        **os.environ,
        "WANDB_MODE": "offline",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(HERE.parents[1]),
    }


def torchrun(nproc: int, *args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    return subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)


NONFINITE = ("nonfinite-zero2", "nonfinite-zero3")


@pytest.fixture(scope="module")
def invariance_results(tmp_path_factory):
    """One step pair per learner: torch, ZeRO-2, ZeRO-3 on 1 rank; ZeRO-2, ZeRO-3 on 2 ranks."""
    tmp = tmp_path_factory.mktemp("ds_inv")
    worker = str(HERE / "ds_invariance_worker.py")
    p1 = torchrun(1, worker, str(tmp / "one.pt"), "torch", "zero2", "zero3", cwd=tmp)
    assert p1.returncode == 0, p1.stderr[-4000:]
    p2 = torchrun(2, worker, str(tmp / "two.pt"), "zero2", "zero3", "zero3-uneven", "resume-zero3", *NONFINITE, cwd=tmp)
    assert p2.returncode == 0, p2.stderr[-4000:]
    one, two = torch.load(tmp / "one.pt"), torch.load(tmp / "two.pt")
    return {
        **{f"{name}/2": two[name] for name in NONFINITE},
        "resume/2": two["resume-zero3"],
        "torch/1": one["torch"],
        "zero2/1": one["zero2"],
        "zero3/1": one["zero3"],
        "zero2/2": two["zero2"],
        "zero3/2": two["zero3"],
        "zero3-uneven/2": two["zero3-uneven"],
    }


def max_weight_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.parametrize(
    "left,right",
    [
        ("torch/1", "zero2/1"),  # torch learner vs DeepSpeed learner on one rank
        ("zero2/1", "zero2/2"),  # one vs two processes
        ("zero3/1", "zero3/2"),
        ("zero2/2", "zero3/2"),  # ZeRO-2 vs ZeRO-3 (ZeRO-3 weights gathered one at a time by named_weights)
        ("zero3/1", "zero3-uneven/2"),  # 6 rows on rank 0, 2 on rank 1: padded with a zero-loss micro-batch
    ],
)
def test_same_loss_and_weights(invariance_results, left, right):
    a, b = invariance_results[left], invariance_results[right]
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)
    assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
    assert max_weight_diff(a["weights"], b["weights"]) < 2e-5


def test_save_and_load_state_restore_the_learner_exactly(invariance_results):
    """2 ranks, ZeRO-3: the step after load_state repeats the step after save_state (weights, Adam moments, lr)."""
    res = invariance_results["resume/2"]
    assert max_weight_diff(res["first"], res["second"]) < 1e-6


@pytest.mark.parametrize("name", NONFINITE)
def test_a_nan_loss_on_one_rank_skips_the_update_on_every_rank(invariance_results, name):
    """fp32 ZeRO on 2 ranks, rank 0's loss NaN at step 2: DeepSpeed's overflow check is global, so both ranks
    skip, say so (`optim/skipped`), keep their weights, and the next clean step trains on finite weights."""
    for rank in invariance_results[f"{name}/2"]["ranks"]:
        assert rank["skipped"] == [0.0, 1.0, 0.0]
        assert rank["unchanged"] and rank["finite_and_moved"] and rank["skipped_updates"] == 1


def test_the_steps_changed_the_weights(invariance_results):
    """Guards the comparisons above against a no-op learner: two steps at lr 1e-2 move every learner alike."""
    from ds_invariance_worker import make_model

    init = {k: v.detach().float() for k, v in make_model().named_parameters()}
    for key, res in invariance_results.items():
        if key.startswith("nonfinite"):
            continue
        if key.startswith("resume"):
            assert max_weight_diff(res["first"], init) > 1e-3
            continue
        assert max_weight_diff(res["weights"], init) > 1e-3, key
        assert res["loss"][0] != pytest.approx(res["loss"][1]), key  # step 2 is off-policy


def read_metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def train_args(run_dir: Path, tiny_model_dir: Path, *extra: str) -> list[str]:
    return [
        "train",
        f"model.path={tiny_model_dir}",
        f"hydra.run.dir={run_dir}",
        "prompts_per_rollout=8",
        "prompts_per_minibatch=4",
        "group_size=4",
        "budget.max_steps=4",  # 2 rollout batches of 2 mini-batches each
        "eval.prompts=8",
        "logger.dump_rollouts_every=2",
        "learner.warmup_steps=1",
        "task.arith.partial_credit=true",  # graded rewards: groups differ even for the barely trained test model
        *extra,
    ]


def check_run(run_dir: Path, world: int) -> None:
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["budget/rollouts_total"] == 2 * 8 * 4  # global counts: 2 rollout batches x 8 prompts x G=4
    assert all(r["memory/peak_gb"] > 0 for r in rows)
    assert all(r["dist/world_size"] == world for r in rows)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["optimizer_steps"] == 4 and summary["memory/peak_gb"] > 0
    assert len(summary["memory/peak_gb_per_rank"]) == world
    dump = (run_dir / "rollouts" / "step_000002.jsonl").read_text().splitlines()
    assert len(dump) == 8 * 4  # rank 0 writes the whole rollout batch, gathered from every rank


def test_two_rank_zero2_training_with_torchrun(tmp_path, tiny_model_dir):
    run_dir = tmp_path / "run"
    p = torchrun(2, "-m", "two_grpo.cli", *train_args(run_dir, tiny_model_dir, "learner=zero2"), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-4000:]
    check_run(run_dir, 2)
    assert "memory/peak_gb" in p.stdout  # the closing summary
    rows = read_metrics(run_dir)
    assert any(r["optim/grad_norm"] > 0 for r in rows) and rows[-1]["optim/lr"] > 0


def test_two_rank_zero3_training_with_the_slurm_script(tmp_path, tiny_model_dir):
    """scripts/slurm_train.sbatch on one "node" of 2 ranks, with stand-ins for srun and scontrol."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "scontrol").write_text("#!/bin/sh\necho localhost\n")
    (stubs / "srun").write_text('#!/bin/sh\nwhile [ "${1#--}" != "$1" ]; do shift; done\nexec "$@"\n')
    for f in stubs.iterdir():
        f.chmod(0o755)
    run_dir = tmp_path / "run"
    slurm_env = {
        **env(),
        "PATH": f"{stubs}:{BIN}:{os.environ['PATH']}",
        "SLURM_JOB_NODELIST": "node-a",
        "SLURM_NNODES": "1",
        "SLURM_JOB_ID": "4242",
        "GPUS_PER_NODE": "2",
        "MASTER_PORT": "29612",
    }
    script = HERE.parents[1] / "scripts" / "slurm_train.sbatch"
    args = train_args(run_dir, tiny_model_dir, "learner=zero3", "learner.zero3_persistence_threshold=0")[1:]
    p = subprocess.run(["bash", str(script), *args], cwd=tmp_path, env=slurm_env, capture_output=True, text=True)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    check_run(run_dir, 2)
    assert (run_dir / "config.yaml").read_text().count("run_id: slurm-4242") == 1
    rows = read_metrics(run_dir)
    assert any(r["optim/grad_norm"] > 0 for r in rows)
    assert all(r["time/sync"] > 0 for r in rows if r["step"] % 2 == 0)  # ZeRO-3 pushes into the HF engine


def test_deepspeed_launcher_runs_the_cli_unchanged(tmp_path, tiny_model_dir):
    launcher = shutil.which("deepspeed", path=str(BIN))
    if launcher is None:
        pytest.skip("the deepspeed launcher is not installed next to this python")
    run_dir = tmp_path / "run"
    cmd = [launcher, "--num_gpus", "2", "--master_port", "29611", "--module", "two_grpo.cli"]
    cmd += train_args(run_dir, tiny_model_dir, "learner=zero2", "budget.max_steps=2", "eval.prompts=0")
    p = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2] and rows[-1]["dist/world_size"] == 2
