"""One sweep member, run as a Hydra multirun job (the submitit launcher runs it in its own OS process).

The job runs the member's `two-grpo train ...` command as a child process (the exact command in plan.json,
which a user can paste), logs to `<member dir>/train.log`, and returns {"run_id", "rc"} instead of raising, so
a failing member never stops Hydra's sweeper from launching the rest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PID_FILE = ".member.pid"
ATTEMPTS_DIR = "attempts"
JOB_CONFIG = "two_grpo_sweep_job"


def member_threads_env(env: dict[str, str], parallel: int, cpus: int | None, launcher: str) -> dict[str, str]:
    """CPU threads per member when `parallel` members share this machine's `cpus` cores (the local launcher;
    on Slurm every member has its own allocation).

    torch starts one intra-op thread per core in every process, so 2 members on 2 cores run 4 spinning OpenMP
    threads and each step can be many times slower (measured: 0.3 s -> 5.8 s per step on 2 cores). Each member
    gets cpus // parallel threads (at least 1) through OMP_NUM_THREADS, unless the user set it.
    """
    if parallel <= 1 or launcher != "submitit_local" or "OMP_NUM_THREADS" in env:
        return env
    return {**env, "OMP_NUM_THREADS": str(max(1, (cpus or 1) // parallel))}


@dataclass
class SweepJobConfig:
    member: str = ""  # run id of the member (the sweep parameter)
    plan: str = ""  # absolute path of plan.json


def register_job_config() -> None:
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=JOB_CONFIG, node=SweepJobConfig)


def is_finished(member_dir: Path) -> bool:
    return (member_dir / "summary.json").is_file()


def running_pid(member_dir: Path) -> int | None:
    """The pid of a member still running from an earlier sweep (its pid file names a live process), else None."""
    try:
        pid = int((member_dir / PID_FILE).read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"two_grpo" in cmdline else None


def prepare_unfinished_member(member_dir: Path) -> list[str]:
    """Make an unfinished member's dir ready for a rerun of the same command; returns extra train overrides.

    With a complete checkpoint the dir is left as it is: the same `two-grpo train` command resumes from it
    (resume.py). Without one (killed before its first checkpoint) `two-grpo train` would refuse the dir, so the
    partial attempt is moved, whole, to `<member dir>/attempts/<n>/` (nothing is deleted) and the member starts
    over.
    """
    from two_grpo.run.checkpoint import CheckpointManager

    leftovers = [p for p in member_dir.iterdir() if p.name != ATTEMPTS_DIR] if member_dir.is_dir() else []
    if not any(p.name == "metrics.jsonl" for p in leftovers) or CheckpointManager(member_dir).latest() is not None:
        return []
    n = len(list((member_dir / ATTEMPTS_DIR).glob("*"))) + 1 if (member_dir / ATTEMPTS_DIR).is_dir() else 1
    dest = member_dir / ATTEMPTS_DIR / str(n)
    dest.mkdir(parents=True)
    for p in leftovers:
        shutil.move(str(p), str(dest / p.name))
    return []


def run_member(cfg: Any) -> dict[str, Any]:
    """Hydra task function: run one member's training command; never raises."""
    t0 = time.time()
    try:
        plan = json.loads(Path(cfg.plan).read_text())
        member = next(m for m in plan["members"] if m["run_id"] == cfg.member)
        member_dir = Path(member["run_dir"])
        extra = prepare_unfinished_member(member_dir)
        member_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "two_grpo.cli", *member["command"][1:], *extra]
        env = member_threads_env(
            dict(os.environ), int(plan.get("parallel", 1)), os.cpu_count(), plan.get("launcher", "submitit_local")
        )
        env["TWO_GRPO_SWEEP_MEMBER"] = member["run_id"]
        env.update(
            {"TWO_GRPO_SWEEP_NAME": plan.get("preset", ""), "TWO_GRPO_SWEEP_MEMBER_NAME": member.get("name", "")}
        )  # wandb
        with open(member_dir / "train.log", "a", encoding="utf-8") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            (member_dir / PID_FILE).write_text(str(proc.pid))
            rc = proc.wait()
        (member_dir / PID_FILE).unlink(missing_ok=True)
        return {"run_id": cfg.member, "rc": rc, "wall_s": time.time() - t0}
    except Exception as exc:  # reported by the sweep, never stops the sweeper
        return {
            "run_id": str(cfg.member),
            "rc": -1,
            "error": f"{type(exc).__name__}: {exc}",
            "wall_s": time.time() - t0,
        }
