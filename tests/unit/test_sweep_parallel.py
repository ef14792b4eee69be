"""`two-grpo sweep parallel=auto|N` (two_grpo/study/sweep.py) and the `make bench` members section's summary maths
(scripts/bench_members.py), without running any member."""

import json
import sys
from pathlib import Path

import pytest

from two_grpo.config.schema import ConfigError
from two_grpo.study import sweep
from two_grpo.study.sweep import cmd_sweep, parse_args, resolve_parallel

ROOT = Path(__file__).resolve().parents[2]
LOCAL, SLURM = "submitit_local", "submitit_slurm"


def test_auto_is_min_of_members_and_cpus_and_integers_pass_through():
    assert resolve_parallel("auto", 6, 2, LOCAL) == 2  # 6 members on 2 cpus: 2 at a time
    assert resolve_parallel("auto", 1, 2, LOCAL) == 1  # a lone member gets every core
    assert resolve_parallel("auto", 3, 16, LOCAL) == 3
    assert resolve_parallel("auto", 4, None, LOCAL) == 1  # os.cpu_count() unknown
    assert resolve_parallel("auto", 6, 16, LOCAL, gpus=1) == 1  # members would share the GPU
    assert resolve_parallel(3, 6, 2, LOCAL) == 3  # explicit integers stay
    assert resolve_parallel(3, 6, 2, LOCAL, gpus=1) == 3
    assert resolve_parallel(4, 6, 2, SLURM) == 4
    assert resolve_parallel(1, 6, 2, LOCAL) == 1
    with pytest.raises(ConfigError, match="parallel=auto .*launcher=submitit_slurm"):
        resolve_parallel("auto", 6, 2, SLURM)  # the login node's cores say nothing about Slurm jobs


@pytest.mark.parametrize("value,shown", [("0", "parallel=0"), ("x", "parallel='x'"), ("true", "parallel=True")])
def test_bad_parallel_is_a_config_error_naming_the_key(value, shown, capsys):
    with pytest.raises(ConfigError, match=f"^{shown} must be an integer >= 1 or auto"):
        parse_args([f"parallel={value}"])
    assert cmd_sweep([f"parallel={value}", "dry_run=true"]) == 2
    err = capsys.readouterr().err
    assert shown in err and len(err.strip().splitlines()) == 1


def test_default_parallel_per_launcher():
    assert parse_args([])[0]["parallel"] == sweep.DEFAULT_PARALLEL_LOCAL == "auto"
    assert parse_args(["launcher=submitit_slurm"])[0]["parallel"] == 1
    assert parse_args(["parallel=auto"])[0]["parallel"] == "auto"


def test_plan_json_records_the_resolved_parallel(tmp_path, monkeypatch, capsys):
    """parallel=auto with 4 members on 2 cpus -> 2 in plan.json and in the launcher's max_batch_size, so the
    report's wall-clock caveat (plan parallel > 1) still fires."""
    launched: dict = {}
    monkeypatch.setattr(sweep.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(sweep, "visible_gpus", lambda: 0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(sweep, "launch", lambda sweep_dir, plan, todo, keys, hydra: launched.update(keys) or [])
    d = tmp_path / "sw"
    assert cmd_sweep(["sweep=smoke", "seeds=[0]", "parallel=auto", f"dir={d}"]) == 0
    plan = json.loads((d / "plan.json").read_text())
    assert len(plan["members"]) == 4 and plan["parallel"] == 2 and launched["parallel"] == 2
    assert "parallel=2: member(s) at a time, OMP_NUM_THREADS=1 each" in capsys.readouterr().out
    assert cmd_sweep(["sweep=smoke", "seeds=[0]", "parallel=3", f"dir={d}"]) == 0
    assert json.loads((d / "plan.json").read_text())["parallel"] == 3 and launched["parallel"] == 3
    assert cmd_sweep(["sweep=smoke", "seeds=[0]", f"dir={d}"]) == 0  # the default on the local launcher: auto
    assert json.loads((d / "plan.json").read_text())["parallel"] == 2 and launched["parallel"] == 2
    monkeypatch.setattr(sweep, "visible_gpus", lambda: 1)
    assert cmd_sweep(["sweep=smoke", "seeds=[0]", f"dir={d}"]) == 0
    assert json.loads((d / "plan.json").read_text())["parallel"] == 1 and launched["parallel"] == 1


# ------------------------------------------------------------------------------------ bench members summary maths
@pytest.fixture
def bench_members(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    import bench_members

    yield bench_members
    sys.modules.pop("bench_members", None)


def layout(wall, member_wall, member_train):
    return {"wall_s": wall, "member_wall_s": member_wall, "member_train_s": member_train}


def test_members_summary_ratios_by_hand(bench_members):
    runs = {
        1: [layout(100, [50, 50], [40, 40]), layout(120, [60, 60], [50, 50])],
        2: [layout(80, [80, 80], [72, 72]), layout(40, [40, 40], [36, 36])],
    }
    res = bench_members.summarize_members(runs, members=2, steps=6, cores=2)
    one, side = res["layouts"]
    assert (one["threads_per_member"], side["threads_per_member"]) == (2, 1)
    assert one["train_s"] == [80, 100] and side["train_s"] == [72, 36]  # summed member training / parallel
    assert one["startup_share_median"] == pytest.approx((0.2 + 1 / 6) / 2)  # 1 - 40/50 twice, 1 - 50/60 twice
    assert side["startup_share_median"] == pytest.approx(0.1)
    wall = res["speedup_side_by_side"]
    assert wall["per_repeat"] == pytest.approx([1.25, 3.0]) and wall["median"] == pytest.approx(2.125)
    assert wall["ratio_of_medians"] == pytest.approx(110 / 60) and wall["every_repeat_above_1"]
    train = res["speedup_side_by_side_training_only"]
    assert train["per_repeat"] == pytest.approx([80 / 72, 100 / 36])
    assert train["ratio_of_medians"] == pytest.approx(90 / 54)
    md = "\n".join(bench_members.markdown(res))
    assert "(wall-clock): **2.12x**" in md and "(training only): **1.94x**" in md and "| 1 | 2 | 100.0, 120.0 |" in md


def test_members_summary_flags_a_losing_repeat_and_one_core(bench_members):
    runs = {1: [layout(100, [50, 50], [40, 40]), layout(90, [45, 45], [40, 40])]}
    runs[2] = [layout(110, [110, 110], [100, 100]), layout(60, [60, 60], [50, 50])]
    res = bench_members.summarize_members(runs, members=2, steps=6, cores=2)
    assert res["speedup_side_by_side"]["per_repeat"] == pytest.approx([100 / 110, 1.5])
    assert not res["speedup_side_by_side"]["every_repeat_above_1"]
    alone = bench_members.summarize_members({1: runs[1]}, members=2, steps=6, cores=1)
    assert "speedup_side_by_side" not in alone and len(alone["layouts"]) == 1


def test_bench_lists_the_members_section(bench_members, capsys):
    import bench

    assert bench.main(["--no-trl", "--sections", "members,nope"]) == 2  # checked before anything runs
    assert "unknown section(s) ['nope']" in capsys.readouterr().err
    assert bench.main(["--no-trl", "--sections", "members", "--member-steps", "0"]) == 2
    assert '"compare,roofline,sampler,opt,scaling,two_vs_16,members"' in (ROOT / "scripts" / "bench.py").read_text()
    assert "- members " in bench.__doc__
    sys.modules.pop("bench", None)
