"""LoRA through the real CLI (CPU, HF engine, tiny model), and extending a finished run.

One reference run trains a LoRA adapter for 6 steps (a checkpoint every 2, all kept). Then: final/ holds the merged
model, equal to peft's own merge of final/adapter onto the base; checkpoints hold the adapter only; a resume from
step 2 ends bitwise equal; raising budget.max_steps on the finished run continues it from its last checkpoint.
Apart from it, a LoRA run on the HF engine learns: its reward and eval rise well past a no-learning control's.
Run: pytest -m slow tests/integration/test_lora_cli.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow
pytest.importorskip("peft")

ARGS = [
    "experiment=smoke",
    "rollout=hf",
    "model.lora.r=8",
    "model.lora.alpha=16",
    "lr=5e-3",
    "budget.max_steps=6",
    "checkpoint.every_steps=2",
    "checkpoint.keep_last=0",
    "eval.prompts=4",
    "task.arith.partial_credit=true",
]
MEASURED = ("time/", "memory/", "throughput/")  # process measurements: differ between a resumed run and the reference


def run(args, run_dir: Path, model_dir: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "two_grpo.cli", "train", *args, f"model.path={model_dir}", f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    return subprocess.run(cmd + ["logger.progress=false"], env=env, capture_output=True, text=True, timeout=900)


def metrics(run_dir: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(MEASURED)} for r in rows]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir) -> Path:
    run_dir = tmp_path_factory.mktemp("lora") / "run"
    p = run(ARGS, run_dir, tiny_model_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "LoRA: " in p.stdout and "trainable parameters" in p.stdout
    return run_dir


def test_final_is_the_merged_model_and_the_adapter_and_checkpoints_hold_the_adapter(reference, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ckpt = reference / "checkpoints" / "step_6" / "learner"
    assert sorted(p.name for p in ckpt.iterdir()) == ["adapter.safetensors", "optimizer.pt", "scheduler.pt"]
    adapter = load_file(str(ckpt / "adapter.safetensors"))
    assert adapter and all(".lora_A." in k or ".lora_B." in k for k in adapter)
    assert any(k.endswith("lora_B.default.weight") and v.abs().max() > 0 for k, v in adapter.items())  # it trained
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    base_w = {k: v.clone() for k, v in base.state_dict().items()}
    merged_by_peft = PeftModel.from_pretrained(base, str(reference / "final" / "adapter")).merge_and_unload()
    final = load_file(str(reference / "final" / "model.safetensors"))
    ours = merged_by_peft.state_dict()
    assert set(final) <= set(ours)
    changed = 0
    for k, v in final.items():
        assert torch.allclose(v, ours[k], atol=1e-6), k
        changed += not torch.equal(v, base_w[k])
    assert changed == 4 * 4  # q, k, v, o projections of 4 layers moved; everything else is the base, bitwise
    m = metrics(reference)
    assert [r["step"] for r in m] == [1, 2, 3, 4, 5, 6]
    assert any(r["optim/grad_norm"] > 0 for r in m)
    for key in ("rollout/reward_std", "rollout/response_tokens_min", "rollout/response_tokens_max"):
        assert key in m[0]
    assert "throughput/tokens_per_s" in json.loads((reference / "metrics.jsonl").read_text().splitlines()[0])


def test_lora_resume_from_a_checkpoint_is_exact(reference, tiny_model_dir, tmp_path):
    cut = tmp_path / "cut"  # as if killed right after the step-2 checkpoint
    shutil.copytree(reference, cut)
    for name in ("step_4", "step_6"):
        shutil.rmtree(cut / "checkpoints" / name)
    (cut / "checkpoints" / "latest").write_text("step_2\n")
    (cut / "summary.json").unlink()
    shutil.rmtree(cut / "final")
    p = run(ARGS, cut, tiny_model_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "(step 2)" in p.stdout
    assert metrics(cut) == metrics(reference)
    a = load_file(str(reference / "checkpoints" / "step_6" / "learner" / "adapter.safetensors"))
    b = load_file(str(cut / "checkpoints" / "step_6" / "learner" / "adapter.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    fa, fb = (load_file(str(d / "final" / "model.safetensors")) for d in (reference, cut))
    assert all(torch.equal(fa[k], fb[k]) for k in fa)


def test_raising_max_steps_extends_a_finished_run(reference, tiny_model_dir, tmp_path):
    run_dir = tmp_path / "extended"
    shutil.copytree(reference, run_dir)
    changed = [a for a in ARGS if not a.startswith("budget.max_steps=")] + ["budget.max_steps=8"]
    p = run(changed, run_dir, tiny_model_dir)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "extending the finished run" in p.stdout and "budget.max_steps 6 -> 8" in p.stdout
    assert "resuming from" in p.stdout and "(step 6)" in p.stdout
    rows = metrics(run_dir)
    assert [r["step"] for r in rows] == list(range(1, 9)) and rows[:6] == metrics(reference)
    assert json.loads((run_dir / "summary.json").read_text())["optimizer_steps"] == 8
    assert (run_dir / "summary.before_extend.json").is_file()
    again = run(changed, run_dir, tiny_model_dir)  # the same command once more: finished, nothing to do
    assert again.returncode == 0 and "already holds a finished run" in again.stdout
    lowered = run(ARGS, run_dir, tiny_model_dir)  # max_steps 8 -> 6 is not an extension
    assert lowered.returncode == 2 and "different config: budget.max_steps=8 there, 6 now" in lowered.stderr
    other = run([*changed, "lr=1e-3"], run_dir, tiny_model_dir)  # a non-budget change stays refused
    assert other.returncode == 2 and "different config: lr=" in other.stderr


# ---- an HF-engine LoRA run learns -------------------------------------------------------------------------------
EVEN_REWARD = """
def even_last_digit(completion, answer, **row):
    s = completion.strip()
    return 1.0 if s[-1:].isdigit() and int(s[-1]) % 2 == 0 else 0.0
"""
LEARN = [
    "rollout=hf",
    "model.path=builtin:tiny",  # the default warm start: answers are digits, about half end in an even one
    "model.lora.r=8",
    "model.lora.alpha=32",
    "model.lora.target_modules=[all-linear]",
    "learner.warmup_steps=0",
    "group_size=8",
    "prompts_per_rollout=16",
    "prompts_per_minibatch=16",
    "budget.max_steps=12",
    "eval.prompts=32",
    "eval.difficulty_prompts=0",
    "rollout.max_response_tokens=6",
    "eval.max_response_tokens=6",
    "checkpoint.every_steps=0",
]
# Measured at these settings on a loaded 2-core CPU (about 2 min for both runs there): controls (seeds 1, 2) kept
# their eval bitwise at its start (0.43, 0.55: the eval's sampling spread between seeds, sd ~0.05) and a rollout
# reward of 0.49 / 0.51 (per-step sd 0.04-0.06, last 4 steps 0.52 / 0.51); the LoRA runs went to eval 0.85 / 0.95
# and a last-4-steps reward of 0.86 / 0.92 (seed 0 passes too). MIN_GAIN is ~5 sd of either noise, < 2/3 of the gain.
# With the 4500-step warm start the adapter's lr 1e-2 oscillated: on an AMD host a dip to 0.64 at steps 9-10, on the
# Intel host a collapse to 0.18-0.20 at steps 8-9 before 0.92 at step 12 (second-half reward 0.50 = the control's,
# though its eval went 0.49 -> 0.96). lr 5e-3 climbs without a dip (Intel host, 2026-12-03, second-half rollout
# reward / eval start -> end): seed 0 0.93 / 0.49 -> 0.98, seed 1 0.82 / 0.45 -> 0.88, seed 2 0.81 / 0.52 -> 0.88;
# controls 0.51 / 0.50 / 0.51 with their evals unmoved. lr 3e-3 learns too, slower (0.81 / 0.73 / 0.63). The reward
# is compared over the second half of the run (6 steps), so one noisy step does not decide it.
# The two claims get their own bounds. The held-out eval (32 prompts x 4 samples, paired with the control's by
# seed) must gain MIN_GAIN, ~5 sd of its noise. The rollout reward's second-half mean must gain MIN_REWARD_GAIN:
# the control's per-step sd 0.04-0.06 gives a 6-step mean sd of ~0.02 per run, ~0.03 for the difference, so 0.10
# is > 3 sd above no learning. The reward bound is lower because it measures the climb, not where it ends: with
# builtin:tiny built at 2 threads on the Intel host (a different model, bytes differ from the 1-thread build there)
# the eval still passed and the second-half reward was 0.63 vs the control's 0.48 (2026-12-03).
MIN_GAIN = 0.25
MIN_REWARD_GAIN = 0.10


def train_cli(args: list[str], run_dir: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "two_grpo.cli", "train", *args, f"hydra.run.dir={run_dir}", "logger.progress=false"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    return subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=1800
    )  # may wait for builtin:tiny's build


def test_an_hf_engine_lora_run_learns_against_a_no_learning_control(tmp_path):
    """The same seed, the same prompts and sampling seeds; only the learning rate differs (1e-9: nothing moves).
    The reward is a plug-in the warm-started model meets half the time (the answer's last digit is even), so a
    dozen updates are enough to see the adapter learn it, in the reward of the rollouts and in the held-out eval."""
    reward_file = tmp_path / "even.py"
    reward_file.write_text(EVEN_REWARD)
    result = {}
    for name, lr in (("lora", "5e-3"), ("control", "1e-9")):
        run_dir = tmp_path / name
        p = train_cli([*LEARN, f"task.reward_fn={reward_file}:even_last_digit", f"lr={lr}"], run_dir)
        assert p.returncode == 0, p.stderr[-3000:]
        assert "LoRA: " in p.stdout and "rollout engine hf" in p.stdout
        summary = json.loads((run_dir / "summary.json").read_text())
        rewards = [json.loads(x)["rollout/reward_mean"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert len(rewards) == 12
        result[name] = (summary["eval/toy_arith/mean@4 (start)"], summary["eval/toy_arith/mean@4 (end)"], rewards)
    (l_start, l_end, l_rew), (c_start, c_end, c_rew) = result["lora"], result["control"]
    assert l_start == c_start  # step 0: the adapter's B is zero, both evaluate the base model with the same seed
    assert c_end == c_start  # the control did not move (its eval is paired with its start eval)
    assert l_rew[0] == c_rew[0]  # the first rollout batch is sampled before any update
    assert abs(sum(c_rew) / 12 - 0.5) < 0.15, c_rew  # the base rate: no learning in the control
    assert l_end >= c_end + MIN_GAIN, (l_end, c_end)
    assert sum(l_rew[6:]) / 6 >= sum(c_rew[6:]) / 6 + MIN_REWARD_GAIN, (l_rew, c_rew)  # the second half of the run
