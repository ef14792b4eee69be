"""diagnostics.grad_noise with its large-batch reference through `two-grpo train`:
pytest -m slow tests/integration/test_grad_noise_cli.py"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow
TRAINING_KEYS = (
    "loss/policy",
    "optim/grad_norm",
    "rollout/reward_mean",
    "budget/rollouts_total",
    "budget/tokens_generated_total",
)


def train(tmp_path, tiny_model_dir, name, *extra):
    run = tmp_path / name
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    args = ["train", f"model.path={tiny_model_dir}", "prompts_per_rollout=8", "prompts_per_minibatch=4", "group_size=4",
            "budget.max_steps=6", "eval.prompts=0", "diagnostics.grad_noise=true", "diagnostics.grad_noise_sets=2",
            f"hydra.run.dir={run}", *extra]  # fmt: skip
    p = subprocess.run([sys.executable, "-m", "two_grpo.cli", *args], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=900)  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_reference_cosine_is_logged_on_schedule_and_training_is_unchanged(tmp_path, tiny_model_dir):
    """U = 2 updates per rollout batch, N = 3: references before steps 0..1 (0), 2..3 (3) and 4..5 (no multiple
    of 3 in 4, 5: none), so at steps 1 and 3. Every training number matches the run without references."""
    plain = train(tmp_path, tiny_model_dir, "plain")
    ref = train(tmp_path, tiny_model_dir, "ref", "diagnostics.grad_noise_ref_every=3",
                "diagnostics.grad_noise_ref_prompts=12")  # fmt: skip
    assert [m["step"] for m in ref] == [1, 2, 3, 4, 5, 6]
    assert [m["step"] for m in ref if "grad_noise/ref_cos" in m] == [1, 3]
    for m in ref:
        if "grad_noise/ref_cos" in m:
            assert -1.0 <= m["grad_noise/ref_cos"] <= 1.0 and m["grad_noise/ref_rollouts"] == 12 * 4
            assert m["grad_noise/ref_s"] > 0
    for a, b in zip(plain, ref):
        for key in TRAINING_KEYS + ("grad_noise/trace_cov", "grad_noise/set_cos_mean"):
            assert a[key] == b[key], (a["step"], key)  # bitwise: reference rollouts are not in the budget
    assert not any("grad_noise/ref_cos" in m for m in plain)
