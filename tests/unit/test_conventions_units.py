"""Units of the conventions work (issue 16): `-m` parsing, the sweep's per-member lines, non-TTY progress, the
header, the TRL/verl metrics, wandb keys and completions table (fake and offline wandb), vLLM log routing,
budget extension rules."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import sys
import types
from pathlib import Path

import pytest
import torch

from two_grpo.data.batch import Prompt, Rollout


def rollout(group, pid, reward, adv, n_tokens, text="x"):
    return Rollout(
        group_id=group, prompt_id=pid, prompt_token_ids=[1], token_ids=list(range(n_tokens)), text=text,
        finish_reason="stop", reward=reward, advantage=adv,
    )  # fmt: skip


# ---- -m -------------------------------------------------------------------------------------------------------
def test_multirun_plan_is_the_product_with_seeds_and_keeps_bracketed_commas():
    from two_grpo.study.sweep import multirun_plan

    argv = ["group_size=2,16", "algo.advantage=grpo,rloo", "seed=0,1,2", "model.lora.target_modules=[q_proj,v_proj]"]
    name, preset, members, common, hydra, sweep_dir = multirun_plan(argv)
    assert len(members) == 2 * 2 * 3
    assert {m.name for m in members} == {"group_size2_advantagegrpo", "group_size2_advantagerloo",
                                         "group_size16_advantagegrpo", "group_size16_advantagerloo"}  # fmt: skip
    assert common == ["model.lora.target_modules=[q_proj,v_proj]"]
    m = next(m for m in members if m.name == "group_size16_advantagerloo" and m.seed == 2)
    assert {"group_size=16", "algo.advantage=rloo", "seed=2", "model.lora.target_modules=[q_proj,v_proj]"} <= set(
        m.overrides
    )
    assert sweep_dir == f"sweeps/{name}" and name.startswith("multirun-group_size-advantage-seed-")
    assert multirun_plan(argv)[0] == name  # the same command -> the same dir (skip / resume)
    assert multirun_plan([*argv, "hydra.sweep.dir=/x"])[5] == "/x"


def test_split_sweep_values():
    from two_grpo.study.sweep import split_sweep_values

    assert split_sweep_values("1,2,3") == ["1", "2", "3"]
    assert split_sweep_values("[a,b],[c]") == ["[a,b]", "[c]"]
    assert split_sweep_values("'a,b',c") == ["'a,b'", "c"]
    assert split_sweep_values("x") == ["x"]


def test_member_watcher_prints_one_line_per_finished_member_with_eta(tmp_path, monkeypatch):
    from two_grpo.study import sweep

    lines: list[str] = []
    clock = [1000.0]
    monkeypatch.setattr(sweep.time, "time", lambda: clock[0])
    w = sweep.MemberWatcher(tmp_path, ["a-s0", "b-s0", "c-s0"], lines.append)
    (tmp_path / "a-s0").mkdir()
    (tmp_path / "a-s0" / "summary.json").write_text(
        json.dumps({"wallclock_s": 59.6, "eval/toy_arith/mean@1 (end)": 0.25})
    )
    clock[0] = 1060.0
    w.check()
    w.check()  # reported once
    assert lines == ["member 1/3 done: a-s0  60s  eval/toy_arith/mean@1 0.250  sweep ETA 2m00s"]
    (tmp_path / "b-s0").mkdir()
    (tmp_path / "b-s0" / "summary.json").write_text(json.dumps({"wallclock_s": 30, "solve_rate_last20pct": 0.5}))
    clock[0] = 1090.0
    w.check()
    assert lines[-1] == "member 2/3 done: b-s0  30s  solve_rate_last20pct 0.500  sweep ETA 45s"  # 90 s / 2 x 1 left


# ---- console --------------------------------------------------------------------------------------------------
def test_progress_line_has_step_total_elapsed_and_eta():
    from two_grpo.run.console import ProgressView

    view = ProgressView(100, enabled=False, print_every=10)
    view.t0 = 0.0
    assert view.progress(1, now=2.0) == "step     1/100  elapsed 2s  ETA 3m18s"  # 2 s/step x 99 steps
    assert view.progress(10, now=20.0) == "step    10/100  elapsed 20s  ETA 3m00s"
    resumed = ProgressView(100, enabled=False, print_every=10)  # a resumed process starts at step 51
    resumed.t0 = 0.0
    assert resumed.progress(51, now=4.0) == "step    51/100  elapsed 4s  ETA 3m16s"
    unbounded = ProgressView(-1, enabled=False, print_every=10)
    unbounded.t0 = 0.0
    assert unbounded.progress(3, now=3.0) == "step     3/?  elapsed 3s  ETA ?"


def test_non_tty_lines_and_header_never_wrap_a_pair(monkeypatch):
    from rich.console import Console

    from two_grpo.config.schema import TrainConfig
    from two_grpo.run import console as c

    buf = io.StringIO()
    monkeypatch.setattr(c, "console", Console(file=buf, width=40, highlight=False))
    derived = {"rollouts_per_minibatch": 256, "rollouts_per_rollout_batch": 256, "updates_per_rollout_batch": 1}
    c.print_header("/a/run/dir/that/is/long", "builtin:tiny", derived, TrainConfig())
    view = c.ProgressView(150, enabled=True, print_every=1)  # not a terminal: plain lines
    view.update({"step": 1, "rollout/solve_rate": 0.5, "rollout/reward_mean": 0.5, "rollout/zero_var_group_frac": 0.1,
                 "rollout/response_tokens_mean": 9.0, "time/step": 1.0})  # fmt: skip
    lines = buf.getvalue().splitlines()
    assert len(lines) == 4  # one line each, however narrow the console
    assert "group_size=8" in lines[1] and "rollouts_per_rollout_batch=256" in lines[2]
    assert lines[3].startswith("step     1/150  elapsed ") and " ETA " in lines[3]


# ---- metrics --------------------------------------------------------------------------------------------------
class _NoDist:
    active = False


def test_peer_metrics_by_hand():
    from two_grpo.run.tracking import STEP_KEYS, peer_metrics

    rs = [rollout(0, 0, 0.0, -1, 3), rollout(0, 0, 1.0, 1, 5), rollout(1, 1, 1.0, 0, 8), rollout(1, 1, 0.0, 0, 4)]
    m = peer_metrics(rs, rollout_s=2.0, tokens_total=100, wall_s=50.0, dist=_NoDist())
    assert m == {
        "rollout/reward_std": 0.5,  # rewards 0,1,1,0: population std 0.5
        "rollout/response_tokens_min": 3.0,
        "rollout/response_tokens_max": 8.0,
        "throughput/tokens_per_s": 2.0,  # 100 tokens in 50 s
        "throughput/rollout_tokens_per_s": 10.0,  # 20 tokens in 2 s
    }
    assert set(m) <= set(STEP_KEYS)


class FakeRun:
    def __init__(self, **kwargs):
        self.init_kwargs, self.logged = kwargs, []

    def log(self, payload, step):
        self.logged.append((step, payload))

    def finish(self):
        pass


def fake_wandb(monkeypatch):
    mod = types.ModuleType("wandb")

    class Table:
        def __init__(self, columns):
            self.columns, self.data = columns, []

        def add_data(self, *row):
            self.data.append(row)

    mod.Table = Table
    mod.runs = []

    def init(**kwargs):
        mod.runs.append(FakeRun(**kwargs))
        return mod.runs[-1]

    mod.init = init
    monkeypatch.setitem(sys.modules, "wandb", mod)
    return mod


def test_wandb_keys_and_completions_table_with_a_fake_wandb(tmp_path, monkeypatch):
    from two_grpo.run.tracking import Tracker

    wandb = fake_wandb(monkeypatch)
    monkeypatch.delenv("TWO_GRPO_SWEEP_NAME", raising=False)
    monkeypatch.delenv("TWO_GRPO_SWEEP_MEMBER_NAME", raising=False)
    t = Tracker(tmp_path, "wandb", "proj", {}, "run-1", entity="team", group="g2-vs-g16", tags=["lora", "cpu"])
    kw = wandb.runs[0].init_kwargs
    assert (kw["entity"], kw["group"], kw["tags"], kw["project"], kw["name"]) == (
        "team", "g2-vs-g16", ["lora", "cpu"], "proj", "run-1"
    )  # fmt: skip
    prompts = {0: Prompt(0, "1+1=", "2"), 1: Prompt(1, "2+2=", "4")}
    t.dump_rollouts(10, [rollout(0, 0, 1.0, 0.7, 2, "2"), rollout(1, 1, 0.0, -0.7, 2, "5")], prompts)
    step, payload = wandb.runs[0].logged[-1]
    table = payload["completions"]
    assert step == 10 and table.columns == ["step", "prompt", "completion", "reward", "advantage"]
    assert table.data == [(10, "1+1=", "2", 1.0, 0.7), (10, "2+2=", "5", 0.0, -0.7)]
    t.close()

    monkeypatch.setenv("TWO_GRPO_SWEEP_NAME", "multirun-group_size-seed-abc")  # set by the sweep for a member
    monkeypatch.setenv("TWO_GRPO_SWEEP_MEMBER_NAME", "group_size2")
    (tmp_path / "m").mkdir()
    Tracker(tmp_path / "m", "wandb", "proj", {}, "run-2").close()
    kw = wandb.runs[1].init_kwargs
    assert (kw["entity"], kw["group"], kw["tags"]) == (None, "multirun-group_size-seed-abc", ["group_size2"])


def test_wandb_offline_run_with_the_keys_and_a_table(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    from two_grpo.run.tracking import Tracker

    monkeypatch.setenv("WANDB_MODE", "offline")
    t = Tracker(tmp_path, "wandb", "two-grpo-test", {"a": 1}, "offline-run", group="grp", tags=["t1"])
    assert t._wandb.group == "grp" and list(t._wandb.tags) == ["t1"]
    prompts = {0: Prompt(0, "1+1=", "2")}
    t.log({"step": 1, "rollout/reward_std": 0.5})
    t.dump_rollouts(1, [rollout(0, 0, 1.0, 0.0, 2, "2")], prompts)
    t.close()
    assert any((tmp_path / "wandb").rglob("*.wandb"))


# ---- vLLM logs ------------------------------------------------------------------------------------------------
def test_engine_log_routing_sends_vllm_warnings_to_the_file_not_stdout(tmp_path, monkeypatch, capsys):
    from two_grpo.run import engine_log

    monkeypatch.delenv("VLLM_LOGGING_CONFIG_PATH", raising=False)
    monkeypatch.delenv("VLLM_CONFIGURE_LOGGING", raising=False)
    assert engine_log.route_engine_logs(tmp_path, verbose=True) is None
    path = engine_log.route_engine_logs(tmp_path, verbose=False)
    assert path == (tmp_path / "engine.log").resolve()
    config = json.loads(Path(engine_log.os.environ["VLLM_LOGGING_CONFIG_PATH"]).read_text())
    logging.config.dictConfig(config)  # what vllm/logger.py does with it on import
    try:
        logging.getLogger("vllm.worker").warning("WARNING from the engine")
        logging.getLogger("vllm.worker").error("an engine error")
        for h in logging.getLogger("vllm").handlers:
            h.flush()
        text = path.read_text()
        assert "WARNING from the engine" in text and "an engine error" in text
        captured = capsys.readouterr()
        assert "WARNING from the engine" not in captured.out + captured.err
    finally:
        for h in list(logging.getLogger("vllm").handlers):
            h.close()
            logging.getLogger("vllm").removeHandler(h)
    monkeypatch.setenv("VLLM_LOGGING_CONFIG_PATH", "/user/own.json")  # the user's own config wins
    assert engine_log.route_engine_logs(tmp_path, verbose=False) is None


def test_console_to_engine_log_moves_fd_level_output_to_the_file_and_back(tmp_path, monkeypatch, capfd):
    """C++ warnings and progress bars write to fds 1/2 directly, past Python's logging: the redirect catches them
    (os.write); the console is back afterwards, also when the block raises. (Python's prints go through fd 1 in a
    real run; under pytest's capture sys.stdout is not fd 1, so tests/integration/test_console_noise_cli.py checks
    those.)"""
    import os

    from two_grpo.run import engine_log

    for key in ("VLLM_LOGGING_CONFIG_PATH", "VLLM_CONFIGURE_LOGGING", "DS_ACCELERATOR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(engine_log, "_console_log", None)
    path = engine_log.route_engine_logs(tmp_path, verbose=False)
    if not torch.cuda.is_available():
        assert os.environ["DS_ACCELERATOR"] == "cpu"  # DeepSpeed's own CPU fallback, without its WARNING
    with engine_log.console_to_engine_log() as target:
        assert target == path
        os.write(2, b"[W utils.cpp:68] Warning: NUMA binding\n")
        os.write(1, b"Loading safetensors checkpoint shards: 100%\n")
    with pytest.raises(RuntimeError, match="engine failed"):
        with engine_log.console_to_engine_log():
            raise RuntimeError("engine failed")
    print("back on the console")
    out, err = capfd.readouterr()
    assert out == "back on the console\n" and err == ""
    assert path.read_text().splitlines() == [
        "[W utils.cpp:68] Warning: NUMA binding",
        "Loading safetensors checkpoint shards: 100%",
    ]
    engine_log.route_engine_logs(tmp_path, verbose=True)  # verbose: nothing is redirected
    with engine_log.console_to_engine_log() as target:
        assert target is None
        os.write(1, b"shown\n")
    assert capfd.readouterr().out == "shown\n"


# ---- extending a finished run ---------------------------------------------------------------------------------
def test_budget_raised_rules():
    from two_grpo.config.schema import TrainConfig
    from two_grpo.run.resume import budget_raised

    old = TrainConfig()
    old.budget.max_steps = 8

    def new(**budget):
        cfg = TrainConfig()
        cfg.budget.max_steps = 8
        for k, v in budget.items():
            setattr(cfg.budget, k, v)
        return cfg

    assert budget_raised(old, new(max_steps=12))
    assert not budget_raised(old, new(max_steps=4))  # lowered
    assert not budget_raised(old, new())  # nothing changed
    assert not budget_raised(old, new(max_rollouts=100))  # 0 (no limit) -> 100 is a new, tighter limit
    other = new(max_steps=12)
    other.lr = 1.0
    assert not budget_raised(old, other)  # a non-budget change is still refused


def test_write_plan_keeps_the_sweep_command_apart_from_the_members_commands(tmp_path):
    from two_grpo.study.sweep import multirun_plan, write_plan

    argv = ["group_size=2,4", "experiment=smoke"]
    name, preset, members, *_ = multirun_plan(argv)
    proj = {m.run_id: {} for m in members}
    plan = json.loads(write_plan(tmp_path, name, preset, members, proj, ["two-grpo", "train", "-m", *argv]).read_text())
    assert plan["sweep_command"] == ["two-grpo", "train", "-m", *argv]
    assert [m["command"][:2] for m in plan["members"]] == [["two-grpo", "train"]] * 2
    assert plan["preset"] == name
