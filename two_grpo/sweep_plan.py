"""Sweep presets (conf/sweep/*.yaml) -> members: override lists, stable run ids, projected budgets.

A member's overrides are, later winning per key: the preset's `common`, the variant's `common`, the member's
own, the command line's, then `seed=`. Members come from `members:` or from a generator (`group_sizes` with
`hold=prompts|rollouts`, or `lr_rules` over `minibatch_prompts`). Run id = `<member>-<hash of its overrides
without seed>-s<seed>`, so the same command always maps to the same directories and a changed override to new ones.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from two_grpo.config import ConfigError

LR_RULES = ("constant", "linear", "sqrt")
HOLDS = ("prompts", "rollouts")


@dataclass
class VariantSpec:
    common: list[str] = field(default_factory=list)  # added to every member
    members: dict[str, list[str]] = field(default_factory=dict)  # replaces the preset's members when non-empty


@dataclass
class SweepPreset:
    """Typed schema of conf/sweep/<name>.yaml; `sweep.<field>=value` on the command line overrides a field."""

    description: str = ""
    baseline: str = ""  # member the report's ratios are against
    seeds: list[int] = field(default_factory=lambda: [0])
    common: list[str] = field(default_factory=list)
    members: dict[str, list[str]] = field(default_factory=dict)
    variants: dict[str, VariantSpec] = field(default_factory=dict)
    variant: str = ""
    group_sizes: list[int] = field(default_factory=list)  # generator: one member per G
    hold: str = "prompts"  # prompts: same prompts per mini-batch; rollouts: same rollouts per mini-batch
    rollouts_per_minibatch: int = 512  # with hold=rollouts: prompts_per_minibatch = this / G
    minibatch_prompts: list[int] = field(default_factory=list)  # generator: prompts per mini-batch x lr rule
    lr_rules: list[str] = field(default_factory=list)  # constant | linear | sqrt
    lr_base: float = 1e-6  # lr at lr_base_prompts prompts per mini-batch
    lr_base_prompts: int = 32
    assume_train_prompts: int = 0  # dry run only: training-set size when the dataset cannot be read offline


@dataclass
class Member:
    name: str  # configuration name (seed excluded)
    seed: int
    config_id: str  # name + hash of the overrides without seed: one report row
    run_id: str
    overrides: list[str]  # what `two-grpo train` gets, without run_id / hydra.run.dir
    own: list[str]  # the member-specific part, for display


def override_key(o: str) -> str:
    return o.split("=", 1)[0].lstrip("+~")


def merge_overrides(*lists: list[str]) -> list[str]:
    """Concatenate override lists; a later value for the same key replaces the earlier one (in its place)."""
    out: dict[str, str] = {}
    for lst in lists:
        for o in lst:
            if "=" not in o:
                raise ConfigError(f"override {o!r} is not KEY=VALUE")
            out.pop(override_key(o), None)
            out[override_key(o)] = o
    return list(out.values())


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "member"


def config_hash(overrides: list[str]) -> str:
    return hashlib.sha1("\n".join(sorted(overrides)).encode()).hexdigest()[:6]


def scaled_lr(rule: str, base_lr: float, base_prompts: int, prompts: int) -> float:
    """lr for `prompts` per mini-batch: constant, linear (x k) or square-root (x sqrt k), k = prompts/base."""
    k = prompts / base_prompts
    return {"constant": base_lr, "linear": base_lr * k, "sqrt": base_lr * math.sqrt(k)}[rule]


def member_overrides(p: SweepPreset) -> tuple[list[str], dict[str, list[str]]]:
    """(common overrides, {member name: own overrides}) of a preset with its variant and generators applied."""
    common = list(p.common)
    members = dict(p.members)
    if p.variants:
        if p.variant not in p.variants:
            raise ConfigError(f"sweep.variant={p.variant!r}: choose one of {', '.join(p.variants)}")
        v = p.variants[p.variant]
        common += v.common
        members = dict(v.members) or members
    if p.group_sizes:
        if p.hold not in HOLDS:
            raise ConfigError(f"sweep.hold={p.hold!r}: choose one of {', '.join(HOLDS)}")
        for g in p.group_sizes:
            own = [f"group_size={g}"]
            if p.hold == "rollouts":
                if p.rollouts_per_minibatch % g:
                    raise ConfigError(
                        f"sweep.rollouts_per_minibatch={p.rollouts_per_minibatch} is not divisible by G={g}"
                    )
                own.append(f"prompts_per_minibatch={p.rollouts_per_minibatch // g}")
            members[f"g{g}"] = own
    for rule in p.lr_rules:
        if rule not in LR_RULES:
            raise ConfigError(f"sweep.lr_rules: {rule!r} is not one of {', '.join(LR_RULES)}")
        for m in p.minibatch_prompts:
            if rule != "constant" and m == p.lr_base_prompts:
                continue  # every rule gives the base lr there: one member, named constant
            lr = scaled_lr(rule, p.lr_base, p.lr_base_prompts, m)
            members[f"m{m}_{rule}"] = [f"prompts_per_minibatch={m}", f"lr={lr:.4g}"]
    if not members:
        raise ConfigError("the sweep preset has no members (members:, group_sizes: or lr_rules:)")
    return common, members


def plan_members(p: SweepPreset, cli: list[str], seeds: list[int]) -> list[Member]:
    common, members = member_overrides(p)
    plan: list[Member] = []
    for name, own in members.items():
        base = merge_overrides(common, own, cli)
        config_id = f"{slug(name)}-{config_hash(base)}"
        for seed in seeds:
            ovr = merge_overrides(base, [f"seed={seed}"])
            plan.append(Member(name, int(seed), config_id, f"{config_id}-s{seed}", ovr, own))
    return plan


def load_preset(conf_dir: str, name: str, preset_overrides: list[str]) -> SweepPreset:
    from omegaconf import OmegaConf

    folder = Path(conf_dir) / "sweep"
    path = folder / f"{name}.yaml"
    if not path.is_file():
        options = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise ConfigError(f"sweep={name}: no such preset; choose one of: {options}")
    try:
        merged = OmegaConf.merge(
            OmegaConf.structured(SweepPreset), OmegaConf.load(path), OmegaConf.from_dotlist(preset_overrides)
        )
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except Exception as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"sweep preset {path.name}: {first} (fields: see two_grpo/sweep_plan.py SweepPreset)"
        ) from None


def count_train_prompts(cfg: Any, assume: int) -> tuple[int, str]:
    """(training-set size, how it was found) for budget projection; assume is used when it cannot be read."""
    if cfg.task.name == "toy_arith":
        from two_grpo.tasks.toy_arith import ToyArithTask

        return len(ToyArithTask(cfg.task.arith).train_prompts()), "counted"
    path = cfg.task.data.path
    if path.endswith((".jsonl", ".json", ".parquet")) and Path(path).is_file():
        from two_grpo.tasks.math_task import load_records

        n = len({str(r.get(cfg.task.data.prompt_field)) for r in load_records(path, cfg.task.data.split)})
        return (min(n, cfg.task.data.max_prompts) if cfg.task.data.max_prompts else n), "counted"
    if cfg.task.data.max_prompts:
        return cfg.task.data.max_prompts, "task.data.max_prompts"
    if assume:
        return assume, "assumed (dataset not read)"
    return 0, "unknown"


def project(cfg: Any, train_prompts: int) -> dict[str, Any]:
    """Projected optimizer steps, rollouts and (upper bound) tokens of a run, from config.derive()."""
    from two_grpo.config import derive

    d = derive(cfg, train_prompts)
    if d.total_steps < 0:
        return {"steps": None, "rollouts": None, "tokens_max": None, "derived": d.as_dict()}
    batches = math.ceil(d.total_steps / d.updates_per_rollout_batch)
    rollouts = batches * d.rollouts_per_rollout_batch
    return {
        "steps": d.total_steps,
        "rollouts": rollouts,
        "tokens_max": rollouts * cfg.rollout.max_response_tokens,
        "derived": d.as_dict(),
    }
