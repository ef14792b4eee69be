"""The zero-signal guard (warns once, stops with exit 4, checkpointable) and resume=auto's choice of run dir."""

from __future__ import annotations

import os

import pytest
from omegaconf import OmegaConf

from two_grpo.run.guards import EXIT_GUARD, GuardTripped, ZeroSignalGuard
from two_grpo.run.resume import find_unfinished_run, resume_decision


def test_zero_signal_warns_once_per_streak_then_stops(capsys):
    g = ZeroSignalGuard(warn_after=2, stop_after=4)
    g.observe(0, 1.0, 0.0)
    assert capsys.readouterr().err == ""  # one batch without signal: not yet
    g.observe(1, 1.0, 0.0)
    g.observe(2, 1.0, 0.0)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("two-grpo: warning: no learning signal: in the last 2 rollout batches")
    assert "every group's rewards were equal (mean reward 0)" in err[0] and "no gradient" in err[0]
    with pytest.raises(GuardTripped) as exc:
        g.observe(3, 1.0, 0.0)
    assert exc.value.exit_code == EXIT_GUARD == 4 and "guards.zero_signal_stop_batches=4" in str(exc.value)


def test_zero_signal_resets_on_any_signal_and_resumes_from_its_state(capsys):
    g = ZeroSignalGuard(warn_after=3, stop_after=5)
    for b in range(4):
        g.observe(b, 1.0, 1.0)
    g.observe(4, 0.97, 0.5)  # one group with signal: the streak ends
    assert g.state_dict() == {"consecutive": 0, "warned": 0}
    for b in range(5, 9):
        g.observe(b, 1.0, 1.0)
    state = g.state_dict()
    assert state == {"consecutive": 4, "warned": 1}
    resumed = ZeroSignalGuard(warn_after=3, stop_after=5)
    resumed.load_state_dict(state)
    capsys.readouterr()
    with pytest.raises(GuardTripped):  # the 5th in a row after the resume, not the 1st
        resumed.observe(9, 1.0, 1.0)
    assert "warning" not in capsys.readouterr().err  # already warned before the checkpoint


def test_zero_signal_off(capsys):
    g = ZeroSignalGuard(warn_after=0, stop_after=0)
    for b in range(100):
        g.observe(b, 1.0, 0.0)
    assert capsys.readouterr().err == ""


def fake_run(root, name, typed, mtime, finished=False, checkpoint=True):
    d = root / name
    (d / "checkpoints" / "step_2").mkdir(parents=True)
    (d / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(typed)))
    (d / "metrics.jsonl").write_text("{}\n")
    if checkpoint:
        (d / "checkpoints" / "step_2" / "trainer_state.json").write_text("{}")
        (d / "checkpoints" / "latest").write_text("step_2\n")
    if finished:
        (d / "summary.json").write_text("{}")
    os.utime(d / "metrics.jsonl", (mtime, mtime))
    return d


def test_resume_auto_picks_the_newest_unfinished_run_with_the_same_config(tmp_path, compose, capsys):
    typed = compose(["resume=auto"])
    other = compose(["lr=3e-4"])
    fake_run(tmp_path, "old", typed, 1000)
    newest = fake_run(tmp_path, "new", typed, 2000)
    fake_run(tmp_path, "finished", typed, 3000, finished=True)
    fake_run(tmp_path, "other-config", other, 4000)
    fake_run(tmp_path, "no-checkpoint", typed, 5000, checkpoint=False)
    assert find_unfinished_run(tmp_path, typed) == newest
    run_dir, cfg, resuming, finished = resume_decision(tmp_path / "fresh-id", typed)
    assert (run_dir, resuming, finished) == (newest, True, False)
    assert f"resume=auto: resuming {newest}" in capsys.readouterr().out


def test_resume_auto_without_a_candidate_starts_fresh_and_says_so(tmp_path, compose, capsys):
    typed = compose(["resume=auto", "lr=7e-4"])
    fake_run(tmp_path, "other", compose([]), 1000)
    run_dir, cfg, resuming, finished = resume_decision(tmp_path / "fresh-id", typed)
    assert (run_dir, resuming, finished) == (tmp_path / "fresh-id", False, False)
    assert cfg.resume == "" and cfg.lr == 7e-4  # the new run's saved config does not say auto
    assert "no unfinished run with this config under" in capsys.readouterr().out
