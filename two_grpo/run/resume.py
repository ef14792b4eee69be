"""Decide at start whether `two-grpo train` starts, resumes or refuses (the resume contract).

- `resume=RUN_DIR`: resume RUN_DIR with the config saved there (`RUN_DIR/config.yaml`).
- `resume=auto`: resume the newest unfinished run (a complete checkpoint, no summary.json) with the same config
  under the run root (the parent of hydra.run.dir: `runs/` by default), saying which; none: start a new run.
- the same command again (same `hydra.run.dir`) on a dir holding an unfinished run with a checkpoint: resume,
  if the config is the same (`run_id` and `resume` aside); a different config is refused naming the first key.
- a dir with metrics.jsonl but no complete checkpoint: refused (nothing to resume from).
- a finished run (summary.json) is reported and left alone, unless the only change is a raised budget limit
  (e.g. budget.max_steps 150 -> 300): then it continues from its last checkpoint (an extension).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from two_grpo.config.schema import TrainConfig
from two_grpo.run.checkpoint import CheckpointManager, set_rng_state, truncate_jsonl

IGNORED_KEYS = ("run_id", "resume")
AUTO = "auto"


class ResumeRefused(ValueError):
    """One line: why this dir cannot be resumed and what to do."""


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def first_difference(saved: TrainConfig, new: TrainConfig) -> tuple[str, Any, Any] | None:
    """(key, saved value, new value) of the first differing config key, ignoring IGNORED_KEYS."""
    from omegaconf import OmegaConf

    a = _flat(OmegaConf.to_container(OmegaConf.structured(saved)))  # type: ignore[arg-type]
    b = _flat(OmegaConf.to_container(OmegaConf.structured(new)))  # type: ignore[arg-type]
    for key in sorted(set(a) | set(b)):
        if key not in IGNORED_KEYS and a.get(key) != b.get(key):
            return key, a.get(key), b.get(key)
    return None


def budget_raised(saved: TrainConfig, new: TrainConfig) -> bool:
    """True when the configs differ only in budget.* and every changed limit is raised (0 = no limit counts as
    the highest): a finished run may then be extended from its last checkpoint."""
    from dataclasses import asdict

    if first_difference(_with_budget(saved, new), new) is not None:
        return False
    before, after = asdict(saved.budget), asdict(new.budget)
    changed = [k for k in before if before[k] != after[k]]
    return bool(changed) and all(before[k] != 0 and (after[k] == 0 or after[k] > before[k]) for k in changed)


def _with_budget(cfg: TrainConfig, other: TrainConfig) -> TrainConfig:
    import copy

    out = copy.deepcopy(cfg)
    out.budget = copy.deepcopy(other.budget)
    return out


def load_saved_config(run_dir: Path) -> TrainConfig:
    from omegaconf import OmegaConf

    from two_grpo.config.schema import validate

    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ResumeRefused(f"{run_dir}: no config.yaml there; give a run dir written by `two-grpo train`")
    merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.load(path))
    typed: TrainConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    validate(typed)
    return typed


def resume_decision(run_dir: Path, typed: TrainConfig) -> tuple[Path, TrainConfig, bool, bool]:
    """-> (run dir, config to run, resuming?, already finished?). Raises ResumeRefused with a one-line reason."""
    if typed.resume == AUTO:
        root = run_dir.parent
        found = find_unfinished_run(root, typed)
        if found is not None:
            print(f"two-grpo: resume=auto: resuming {found} (the newest unfinished run with this config under {root})")
            return found, load_saved_config(found), True, False
        print(
            f"two-grpo: resume=auto: no unfinished run with this config under {root}; starting a new run in {run_dir}"
        )
        typed = replace(typed, resume="")
    if typed.resume:
        run_dir = Path(typed.resume).expanduser()
        saved = load_saved_config(run_dir)
        finished = (run_dir / "summary.json").is_file()
        if not finished and CheckpointManager(run_dir).latest() is None:
            raise ResumeRefused(
                f"resume={typed.resume}: no complete checkpoint in {run_dir / 'checkpoints'}; start a new run instead"
            )
        return run_dir, saved, True, finished
    if not (run_dir / "metrics.jsonl").exists():
        return run_dir, typed, False, False
    saved = load_saved_config(run_dir)
    diff = first_difference(saved, typed)
    if diff is not None and (run_dir / "summary.json").is_file() and budget_raised(saved, typed):
        if CheckpointManager(run_dir).latest() is None:
            raise ResumeRefused(f"{run_dir}: the finished run has no checkpoint to continue from; start a new run")
        return run_dir, typed, True, False  # extend the finished run (cli.py writes the new config and says so)
    if diff is not None:
        key, old, new = diff
        raise ResumeRefused(
            f"{run_dir} holds a run with a different config: {key}={old!r} there, {new!r} now; "
            "repeat the original overrides to resume it, or choose another hydra.run.dir"
        )
    if (run_dir / "summary.json").is_file():
        return run_dir, saved, False, True
    if CheckpointManager(run_dir).latest() is None:
        raise ResumeRefused(
            f"{run_dir} already holds a run (metrics.jsonl) with no complete checkpoint to resume; "
            "choose another hydra.run.dir or run_id"
        )
    return run_dir, saved, True, False


def find_unfinished_run(root: Path, typed: TrainConfig) -> Path | None:
    """The newest dir under `root` (by its metrics.jsonl's time) holding an unfinished run with a complete
    checkpoint and the same config as `typed` (IGNORED_KEYS aside); None when there is none."""
    found: list[tuple[float, str, Path]] = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if not (d / "config.yaml").is_file() or (d / "summary.json").exists() or not (d / "metrics.jsonl").exists():
            continue
        try:
            if first_difference(load_saved_config(d), typed) is not None:
                continue
        except Exception:  # an unreadable or foreign config.yaml is not a candidate
            continue
        if CheckpointManager(d).latest() is not None:
            found.append(((d / "metrics.jsonl").stat().st_mtime, d.name, d))
    return max(found)[2] if found else None


def extension_note(run_dir: Path, new: TrainConfig) -> str:
    """The printed note of an extension; moves the finished run's summary.json aside (summary.before_extend.json)."""
    from dataclasses import asdict

    saved = load_saved_config(run_dir)
    before, after = asdict(saved.budget), asdict(new.budget)
    changes = ", ".join(f"budget.{k} {before[k]} -> {after[k]}" for k in before if before[k] != after[k])
    latest = CheckpointManager(run_dir).latest()
    (run_dir / "summary.json").replace(run_dir / "summary.before_extend.json")
    return f"extending the finished run in {run_dir} ({changes}): continuing from {latest.path if latest else '?'}"


def prepare_resume(run_dir: Path, ckpts: CheckpointManager, dist):
    """Before anything is written: drop partial checkpoints, pick the latest complete one and cut the run's
    logs back to its step (the lines after it are produced again; rank 0 edits, every rank reads).
    Returns the Checkpoint or None."""
    from two_grpo.study.evaluate import OUTCOMES_FILE

    if not dist.is_main:
        dist.barrier()
        return ckpts.latest()
    removed = ckpts.clean_partial()
    if removed:
        print(f"two-grpo: removed incomplete checkpoint(s) left by an interrupted save: {', '.join(removed)}")
    latest = ckpts.latest()
    step = latest.step if latest is not None else 0
    truncate_jsonl(run_dir / "metrics.jsonl", step)
    truncate_jsonl(run_dir / "reward_failures.jsonl", step)
    truncate_jsonl(run_dir / "eval.jsonl", step)
    truncate_jsonl(run_dir / OUTCOMES_FILE, step)
    for dump in (run_dir / "rollouts").glob("step_*.jsonl"):
        if int(dump.stem.split("_")[1]) > step:
            dump.unlink()
    if latest is not None:
        print(f"two-grpo: resuming from {latest.path} (step {latest.step})")
    dist.barrier()
    return latest


def restore(loop: Any, ckpt: Any, dist: Any) -> None:
    """Resume `loop` (run/state.py Loop) from checkpoint `ckpt`: the learner's state (collective under DeepSpeed),
    its weights pushed into the rollout engine, the loop's own state, and this rank's RNGs last."""
    from two_grpo.dist.multirank import engine_needs_push

    ckpt_state = ckpt.trainer_state()
    loop.learner.load_state(ckpt.learner_dir)
    if engine_needs_push(loop.engine, loop.learner):
        loop.engine.load_weights(loop.learner.named_weights())
    loop.load_state_dict(ckpt_state)
    set_rng_state(ckpt.rng(dist.rank))


def resume_command(run_dir: Path) -> str:
    """The exact command that resumes `run_dir` (its saved config is used; under torchrun / deepspeed, add
    `resume=RUN_DIR` to the launch command instead)."""
    import shlex

    return f"two-grpo train resume={shlex.quote(str(run_dir))}"
