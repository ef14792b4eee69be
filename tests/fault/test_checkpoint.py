"""Checkpoint files without a training run: atomic save, `latest`, keep-last, partial saves, full disk,
learner state round trip, RNG round trip, pickle refusal, log truncation."""

from __future__ import annotations

import errno
import json
import os
import random
import subprocess
import sys

import pytest
import torch

from two_grpo.run import checkpoint as ckpt_mod
from two_grpo.run.checkpoint import CheckpointManager, rng_state, set_rng_state, truncate_jsonl


class FakeLearner:
    """Writes one file like a learner would; `value` lets a test tell checkpoints apart."""

    def __init__(self, value: int = 0):
        self.value = value

    def save_state(self, folder):
        (folder / "weights.txt").write_text(str(self.value))


def test_save_writes_whole_folder_and_points_latest(tmp_path):
    mgr = CheckpointManager(tmp_path, every_steps=2, keep_last=0)
    assert mgr.latest() is None
    mgr.save(2, FakeLearner(2), {"rollout_batch": 1})
    mgr.save(4, FakeLearner(4), {"rollout_batch": 2})
    assert (tmp_path / "checkpoints" / "latest").read_text().strip() == "step_4"
    latest = mgr.latest()
    assert latest.step == 4 and latest.trainer_state() == {"rollout_batch": 2, "step": 4}
    assert (latest.learner_dir / "weights.txt").read_text() == "4"
    assert [c.step for c in mgr.complete()] == [2, 4]
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_keep_last_deletes_old_only_after_new_is_complete(tmp_path, monkeypatch):
    mgr = CheckpointManager(tmp_path, keep_last=1)
    mgr.save(2, FakeLearner(), {})
    seen_during_save = []
    real = ckpt_mod.write_json

    def spy(path, payload):
        seen_during_save.append(sorted(c.step for c in mgr.complete()))
        real(path, payload)

    monkeypatch.setattr(ckpt_mod, "write_json", spy)
    mgr.save(4, FakeLearner(), {})
    assert seen_during_save and all(s == [2] for s in seen_during_save)  # step_2 still there while step_4 is written
    assert [c.step for c in mgr.complete()] == [4]


def test_partial_save_is_ignored_and_cleaned(tmp_path):
    mgr = CheckpointManager(tmp_path)
    mgr.save(2, FakeLearner(), {})
    partial = tmp_path / "checkpoints" / "step_4.tmp"
    partial.mkdir()
    (partial / "learner").mkdir()
    (partial / "rng.json").write_text("{")  # cut mid-write
    incomplete = tmp_path / "checkpoints" / "step_6"  # a folder without trainer_state.json never counts
    incomplete.mkdir()
    assert mgr.latest().step == 2
    assert mgr.clean_partial() == ["step_4.tmp"]
    assert not partial.exists()
    (tmp_path / "checkpoints" / "latest").unlink()  # a lost pointer falls back to the newest complete folder
    assert mgr.latest().step == 2


def test_full_disk_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    mgr = CheckpointManager(tmp_path, keep_last=1)
    mgr.save(2, FakeLearner(2), {"x": 1})

    def full(path, payload):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt_mod, "write_json", full)
    with pytest.raises(OSError, match="No space left"):
        mgr.save(4, FakeLearner(4), {"x": 2})
    assert mgr.latest().step == 2 and (mgr.latest().learner_dir / "weights.txt").read_text() == "2"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step_2"]


def test_trainer_says_so_in_one_line_on_full_disk(tmp_path, monkeypatch, capsys):
    from two_grpo.run.checkpoint import save_checkpoint

    mgr = CheckpointManager(tmp_path)
    assert save_checkpoint(mgr, 2, FakeLearner(), {}, -1) == 2
    capsys.readouterr()
    monkeypatch.setattr(ckpt_mod, "write_json", lambda p, x: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    assert save_checkpoint(mgr, 4, FakeLearner(), {}, 2) == 2  # the last saved step stays 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint at step 4 not saved" in err[0] and "step_2 is intact" in err[0]


def test_due_counts_multiples_crossed_by_a_rollout_batch():
    mgr = CheckpointManager("unused", every_steps=3)
    # rollout batches of 2 updates: 0->2 no, 2->4 crosses 3, 4->6 crosses 6, 6->8 no
    assert [mgr.due(a, a + 2) for a in (0, 2, 4, 6)] == [False, True, True, False]
    assert not CheckpointManager("unused", every_steps=0).due(0, 100)


def test_rng_round_trip_is_exact():
    import numpy as np

    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = json.loads(json.dumps(rng_state()))  # through JSON, as on disk
    expect = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(state)
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expect[0] and got[1] == expect[1] and torch.equal(got[2], expect[2])


def _tiny_learner(seed: int = 0):
    from two_grpo.config.schema import AlgoConfig, LearnerConfig
    from two_grpo.learner.torch_learner import TorchLearner

    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    return TorchLearner(model, LearnerConfig(warmup_steps=3), 1e-2, AlgoConfig(), 1.0)


def _adam_steps(learner, n: int) -> None:
    for _ in range(n):
        learner.optimizer.zero_grad()
        learner.model(torch.ones(3, 4)).pow(2).sum().backward()
        learner.optimizer.step()
        learner.scheduler.step()


def test_learner_state_round_trip_continues_bitwise(tmp_path):
    """save_state after 2 steps, load into a fresh learner, 2 more steps == 4 uninterrupted steps, bitwise."""
    straight = _tiny_learner()
    _adam_steps(straight, 4)
    first = _tiny_learner()
    _adam_steps(first, 2)
    first.save_state(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"model.safetensors", "optimizer.pt", "scheduler.pt"}
    resumed = _tiny_learner(seed=5)  # different init: everything must come from the files
    resumed.load_state(tmp_path)
    assert resumed.scheduler.get_last_lr() == first.scheduler.get_last_lr()  # warm-up position (3 of 3)
    _adam_steps(resumed, 2)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


class _Evil:
    def __reduce__(self):
        return (exec, (f"open({str(EVIL_MARK)!r}, 'w').write('pwned')",))


EVIL_MARK = None


def test_malicious_pickle_is_refused(tmp_path):
    """A checkpoint whose optimizer.pt runs code when unpickled: load_state refuses it, nothing runs."""
    global EVIL_MARK
    EVIL_MARK = tmp_path / "pwned"
    learner = _tiny_learner()
    learner.save_state(tmp_path)
    torch.save({"state": {}, "param_groups": [], "x": _Evil()}, tmp_path / "optimizer.pt")
    with pytest.raises(Exception, match="Weights only load failed|Unsupported global"):
        _tiny_learner().load_state(tmp_path)
    assert not EVIL_MARK.exists()


def test_every_torch_load_uses_weights_only():
    """Source scan: each torch.load call in the package passes weights_only=True."""
    import ast
    from pathlib import Path

    import two_grpo

    calls = 0
    for path in Path(two_grpo.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load":
                if isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                    calls += 1
                    kw = {k.arg: k.value for k in node.keywords}
                    assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, (
                        f"{path}:{node.lineno}"
                    )
    assert calls >= 2  # the learner's optimizer and scheduler loads


def test_no_hydra_instantiate_in_the_package():
    """Config values never become objects: no hydra.utils.instantiate / call anywhere (and `_target_` keys are
    refused at composition: tests/fault/test_bad_input.py)."""
    from pathlib import Path

    import two_grpo

    for path in Path(two_grpo.__file__).parent.rglob("*.py"):
        text = path.read_text()
        assert "instantiate(" not in text and "hydra.utils" not in text, path


def test_truncate_jsonl_keeps_lines_up_to_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "v": s * 0.1}) + "\n" for s in range(1, 6)) + '{"step": 6, "v"')
    assert truncate_jsonl(path, 3) == 3  # steps 4, 5 and the line cut by a kill
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2, 3]
    assert truncate_jsonl(tmp_path / "absent.jsonl", 3) == 0


def test_kill_during_save_leaves_previous_loadable(tmp_path):
    """A real SIGKILL in the middle of a save (after the weights, before the trainer state)."""
    script = f"""
import os, signal
from pathlib import Path
from two_grpo.run import checkpoint as c
class L:
    def save_state(self, folder): (folder / "weights.txt").write_text("w")
mgr = c.CheckpointManager(Path({str(tmp_path)!r}), keep_last=1)
mgr.save(2, L(), {{}})
def die(path, payload):
    if path.name == c.STATE_FILE: os.kill(os.getpid(), signal.SIGKILL)
    Path(path).write_text("{{}}")
c.write_json = die
mgr.save(4, L(), {{}})
"""
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert p.returncode == -9, p.stderr
    root = tmp_path / "checkpoints"
    assert (root / "step_4.tmp" / "learner" / "weights.txt").exists()  # the kill hit mid-save
    mgr = CheckpointManager(tmp_path, keep_last=1)
    assert mgr.latest().step == 2 and (mgr.latest().learner_dir / "weights.txt").exists()
    assert mgr.clean_partial() == ["step_4.tmp"]
    assert sorted(os.listdir(root)) == ["latest", "step_2"]
