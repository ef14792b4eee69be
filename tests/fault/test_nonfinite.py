"""Numerical guard: a non-finite loss or grad norm skips the update (weights and Adam state unchanged), is
logged and counted; learner.max_consecutive_skips in a row stop the run (exit 4), keeping the last checkpoint."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

import two_grpo.learner.torch_learner as tl
from two_grpo.cli import main
from two_grpo.config.schema import AlgoConfig, LearnerConfig
from two_grpo.run.guards import GuardTripped, NonFiniteGuard


class FakeBatch:
    """What TorchLearner.train_minibatch reads from a mini-batch."""

    n_tokens = 3.0
    input_ids = torch.zeros(3, 2, dtype=torch.long)  # on the CPU: the learner's device move keeps the batch as is

    def __len__(self):
        return 3

    def split_rows(self, n):
        return [self]

    def select(self, idx):
        return self


def _learner():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    return tl.TorchLearner(model, LearnerConfig(warmup_steps=0), 1e-1, AlgoConfig(), 1.0)


@pytest.mark.parametrize("poison", [math.nan, math.inf])
def test_non_finite_loss_skips_the_update(monkeypatch, poison):
    learner = _learner()
    scale = {"v": 1.0}

    def loss_fn(model, micro, algo, temperature, n_tok, n_seq, *chunking, **forward_kwargs):
        loss = model(torch.ones(3, 4)).sum() * scale["v"]
        return loss, {"loss/policy": float(loss.detach())}

    monkeypatch.setattr(tl, "micro_batch_loss", loss_fn)
    assert learner.train_minibatch(FakeBatch())["optim/skipped"] == 0.0  # one good step builds Adam state
    weights = [p.detach().clone() for p in learner.params]
    adam = {k: v.clone() for k, v in learner.optimizer.state[learner.params[0]].items()}
    scale["v"] = poison
    out = learner.train_minibatch(FakeBatch())
    assert out["optim/skipped"] == 1.0 and not math.isfinite(out["optim/grad_norm"])
    assert learner.skipped_updates == 1
    assert all(torch.equal(a, b) for a, b in zip(weights, learner.params))
    assert all(torch.equal(adam[k], learner.optimizer.state[learner.params[0]][k]) for k in adam)


def test_guard_counts_in_a_row_and_resets(capsys):
    guard = NonFiniteGuard(max_consecutive=3)
    skip, ok = {"optim/skipped": 1.0, "loss/policy": math.nan}, {"optim/skipped": 0.0}
    guard.observe(1, skip)
    guard.observe(2, skip)
    guard.observe(3, ok)  # a good update resets the streak
    guard.observe(4, skip)
    guard.observe(5, skip)
    assert (guard.total, guard.consecutive) == (4, 2)
    with pytest.raises(GuardTripped, match="step 6: 3 non-finite updates in a row .learner.max_consecutive_skips=3."):
        guard.observe(6, skip)
    assert "step 1: non-finite loss or grad norm" in capsys.readouterr().err
    assert NonFiniteGuard(0).observe(1, skip) is None  # 0 = never stop


@pytest.mark.slow
def test_nan_run_stops_with_exit_4_and_keeps_the_last_good_checkpoint(tmp_path, tiny_model_dir, monkeypatch, capsys):
    """smoke: 2 updates per rollout batch, checkpoints every 2 steps. From the 3rd update on the loss is NaN:
    steps 3, 4, 5 are skipped and the run stops at step 5 (3 in a row); step_4's weights equal step_2's."""
    calls = {"n": 0}
    real = tl.micro_batch_loss

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss, metrics = real(*args, **kwargs)
        return (loss * math.nan, metrics) if calls["n"] >= 3 else (loss, metrics)

    monkeypatch.setattr(tl, "micro_batch_loss", poisoned)
    run_dir = tmp_path / "run"
    code = main(
        [
            "train",
            "experiment=smoke",
            "budget.max_steps=8",
            "eval.prompts=0",
            "checkpoint.every_steps=2",
            "checkpoint.keep_last=0",
            "learner.max_consecutive_skips=3",
            "learner.micro_rollouts=64",  # one micro-batch per update: call n == update n
            f"model.path={tiny_model_dir}",
            f"hydra.run.dir={run_dir}",
            "logger.progress=false",
        ]
    )
    err = capsys.readouterr().err
    assert code == 4
    assert "two-grpo: error: step 5: 3 non-finite updates in a row (learner.max_consecutive_skips=3)" in err
    assert err.count("update skipped") == 3
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["optim/skipped"] for r in rows] == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_4" and not (
        run_dir / "summary.json"
    ).exists()
    w2, w4 = (load_file(run_dir / "checkpoints" / s / "learner" / "model.safetensors") for s in ("step_2", "step_4"))
    assert all(torch.equal(w2[k], w4[k]) for k in w2)  # the skipped updates changed nothing
    state = json.loads((run_dir / "checkpoints" / "step_4" / "trainer_state.json").read_text())
    assert state["skipped_updates"] == 2 and state["guard"] == {"total": 2, "consecutive": 2}
