"""Checkpoints that survive a kill: `<run_dir>/checkpoints/step_N`, written whole or not at all.

A save writes everything into `step_N.tmp/`, fsyncs it, renames the folder to `step_N` (one atomic rename),
then replaces the small file `latest` (write `latest.tmp`, fsync, `os.replace`). So `latest` only ever names a
complete folder; a kill mid-save leaves a `*.tmp` folder that `CheckpointManager.clean_partial` removes on the
next start. With `keep_last=K` older folders are deleted only after the new one is complete.

Layout of one checkpoint:
    learner/            written by `learner.save_state(dir)` (model.safetensors, optimizer.pt, scheduler.pt;
                        with LoRA adapter.safetensors instead of model.safetensors: the base is model.path's)
    trainer_state.json  step, rollout batch, budget counters, sampler position, metrics history, eval at start
    rng.json            Python, NumPy and torch CPU RNG states
Only the trainer (main process) writes; everything loads with safetensors / json / torch.load(weights_only=True).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

STEP_DIR = re.compile(r"^step_(\d+)$")
STATE_FILE = "trainer_state.json"
RNG_FILE = "rng.json"
LATEST = "latest"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    for path in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        _fsync_dir(path)


def write_json(path: Path, payload: Any) -> None:
    """The JSON writer of every checkpoint file (tests patch it to simulate a full disk or a kill mid-save)."""
    path.write_text(json.dumps(payload, sort_keys=True))


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch CPU RNG states as JSON-able values (no pickle)."""
    py_version, py_state, py_gauss = random.getstate()
    out: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "torch": torch.get_rng_state().tolist(),
    }
    try:
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        out["numpy"] = [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]
    except ImportError:
        pass
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "numpy" in state:
        import numpy as np

        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def rng_file(rank: int) -> str:
    """Rank 0 writes rng.json, rank r > 0 rng.rank<r>.json (each rank has its own RNG streams)."""
    return RNG_FILE if rank == 0 else f"rng.rank{rank}.json"


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path

    def trainer_state(self) -> dict[str, Any]:
        return json.loads((self.path / STATE_FILE).read_text())

    def rng(self, rank: int = 0) -> dict[str, Any]:
        return json.loads((self.path / rng_file(rank)).read_text())

    @property
    def learner_dir(self) -> Path:
        return self.path / "learner"


class CheckpointManager:
    """Save, find and prune the checkpoints of one run dir."""

    def __init__(self, run_dir: Path, every_steps: int = 0, keep_last: int = 0):
        self.root = Path(run_dir) / "checkpoints"
        self.every_steps, self.keep_last = every_steps, keep_last

    # ---- finding -------------------------------------------------------------------------------------------
    def complete(self) -> list[Checkpoint]:
        """Complete checkpoints, oldest first (a folder counts only with its trainer_state.json)."""
        if not self.root.is_dir():
            return []
        out = []
        for path in self.root.iterdir():
            m = STEP_DIR.match(path.name)
            if m and path.is_dir() and (path / STATE_FILE).is_file() and (path / RNG_FILE).is_file():
                out.append(Checkpoint(int(m.group(1)), path))
        return sorted(out, key=lambda c: c.step)

    def latest(self) -> Checkpoint | None:
        """The checkpoint named by `latest`, else the newest complete folder (if `latest` was lost)."""
        pointer = self.root / LATEST
        if pointer.is_file():
            name = pointer.read_text().strip()
            m = STEP_DIR.match(name)
            if m and (self.root / name / STATE_FILE).is_file():
                return Checkpoint(int(m.group(1)), self.root / name)
        done = self.complete()
        return done[-1] if done else None

    def clean_partial(self) -> list[str]:
        """Delete folders left by a save that was killed (`*.tmp`); returns their names."""
        removed = []
        if self.root.is_dir():
            for path in self.root.iterdir():
                if path.name.endswith(".tmp"):
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
                    removed.append(path.name)
        return sorted(removed)

    # ---- saving --------------------------------------------------------------------------------------------
    def due(self, steps_before: int, steps_now: int) -> bool:
        """True when a multiple of every_steps was reached by the rollout batch that took steps_before -> now."""
        return self.every_steps > 0 and steps_now // self.every_steps > steps_before // self.every_steps

    def save(self, step: int, learner: Any, trainer_state: dict[str, Any], dist: Any = None) -> Checkpoint:
        """Write checkpoint `step_<step>` whole, point `latest` at it, prune. Raises OSError on a write failure,
        leaving the previous checkpoints and `latest` untouched (the partial folder is removed).
        With several ranks (`dist`, see dist.py) every rank calls this: all write their learner partition and
        RNG file, then rank 0 writes the trainer state and renames the folder."""
        rank = dist.rank if dist is not None else 0
        barrier = dist.barrier if dist is not None else (lambda: None)
        final = self.root / f"step_{step}"
        tmp = self.root / f"step_{step}.tmp"
        if rank == 0:
            self.root.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
        try:
            if rank == 0:
                tmp.mkdir()
                (tmp / "learner").mkdir()
            barrier()
            learner.save_state(tmp / "learner")
            write_json(tmp / rng_file(rank), rng_state())
            barrier()
            if rank != 0:
                barrier()  # rank 0 renames
                return Checkpoint(step, final)
            write_json(tmp / STATE_FILE, {**trainer_state, "step": step})
            _fsync_tree(tmp)
            if final.exists():  # a re-save of the same step (e.g. the end of a run that just checkpointed)
                shutil.rmtree(final)
            os.rename(tmp, final)
            _fsync_dir(self.root)
            pointer_tmp = self.root / f"{LATEST}.tmp"
            pointer_tmp.write_text(final.name + "\n")
            with open(pointer_tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(pointer_tmp, self.root / LATEST)
            _fsync_dir(self.root)
        except BaseException:
            if rank == 0:
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        barrier()
        self.prune()
        return Checkpoint(step, final)

    def prune(self) -> None:
        if self.keep_last <= 0:
            return
        done = self.complete()
        for ckpt in done[: max(0, len(done) - self.keep_last)]:
            shutil.rmtree(ckpt.path, ignore_errors=True)


def truncate_jsonl(path: Path, max_step: int, key: str = "step") -> int:
    """Keep the lines of a JSONL file whose `key` <= max_step (atomically); returns the lines dropped."""
    if not path.is_file():
        return 0
    keep, dropped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            step = json.loads(line).get(key, 0)
        except json.JSONDecodeError:  # a line cut by the kill
            dropped += 1
            continue
        if step <= max_step:
            keep.append(line)
        else:
            dropped += 1
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
    os.replace(tmp, path)
    return dropped


def save_checkpoint(
    ckpts: CheckpointManager, step: int, learner, state: dict[str, Any], saved_step: int, dist=None
) -> int:
    """Save; on a write failure (full disk...) say so in one line and keep going. Returns the last saved step."""
    t0 = time.perf_counter()
    try:
        ckpt = ckpts.save(step, learner, state, dist)
    except OSError as exc:
        previous = ckpts.latest()
        kept = f"the previous checkpoint {previous.path} is intact" if previous else "no earlier checkpoint exists"
        print(f"two-grpo: warning: checkpoint at step {step} not saved ({exc}); {kept}", file=sys.stderr, flush=True)
        return saved_step
    if dist is None or dist.is_main:
        print(f"two-grpo: checkpoint {ckpt.path} ({time.perf_counter() - t0:.2f}s)", flush=True)
    return step
