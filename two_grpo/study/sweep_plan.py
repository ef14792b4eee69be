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

from two_grpo.config.schema import ConfigError

LR_RULES = ("constant", "linear", "sqrt")
HOLDS = ("prompts", "rollouts")
BUDGETS = ("epochs", "matched_rollouts")  # sweep budget=...: as the members set it, or the same total rollouts


@dataclass
class VariantSpec:
    common: list[str] = field(default_factory=list)  # added to every member
    members: dict[str, list[str]] = field(default_factory=dict)  # replaces the preset's members when non-empty


@dataclass
class ScaleSpec:
    """One scale of a preset (paper | cpu): overrides for every member, and extra overrides per member."""

    common: list[str] = field(default_factory=list)
    members: dict[str, list[str]] = field(default_factory=dict)  # appended to the named members' own


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
    claim: str = ""  # the claim the preset tests, in words (printed in the plan and the report)
    budget: str = "epochs"  # epochs: each member's own budget (equal epochs); matched_rollouts: see below
    matched_rollouts: int = 0  # budget=matched_rollouts: every member stops here; 0 = the baseline's projection
    matched_members: list[str] = field(default_factory=list)  # members matched even with budget=epochs
    eval_points: int = 0  # > 0: eval.every_rollouts = the smallest member's rollouts / this, for every member
    min_effect: float = 0.05  # the report's min effect (0..1): smaller differences count as none
    show_advantages: bool = False  # dry_run prints each member's advantages on a G=2 example batch
    scales: dict[str, ScaleSpec] = field(default_factory=dict)  # scale name -> its overrides
    scale: str = ""  # which of `scales` (e.g. paper | cpu): sweep.scale=cpu
    comparisons: list[list[str]] = field(default_factory=list)  # [[config, reference], ...]; [] = all vs baseline
    alias: str = ""  # this preset is another preset's old name
    only: list[str] = field(default_factory=list)  # run just these members (sweep.only=[g16,g2]); [] = all


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
    if p.scales:
        if p.scale not in p.scales:
            raise ConfigError(f"sweep.scale={p.scale!r}: choose one of {', '.join(p.scales)}")
        sc = p.scales[p.scale]
        common = list(sc.common) + common
        unknown = [n for n in sc.members if n not in members]
        if unknown:
            raise ConfigError(f"sweep scale {p.scale}: members {', '.join(unknown)} are not in the preset")
        members = {n: list(o) + list(sc.members.get(n, [])) for n, o in members.items()}
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
    if p.only:
        unknown = [n for n in p.only if n not in members]
        if unknown:
            raise ConfigError(f"sweep.only: {', '.join(unknown)} not a member; members: {', '.join(members)}")
        members = {n: o for n, o in members.items() if n in p.only}
    if not members:
        raise ConfigError("the sweep preset has no members (members:, group_sizes: or lr_rules:)")
    return common, members


def plan_members(
    p: SweepPreset, cli: list[str], seeds: list[int], extra: dict[str, list[str]] | None = None
) -> list[Member]:
    """Members in preset order; `extra` (member name -> overrides, "*" for all) comes after the command line
    (the sweep's budget matching)."""
    common, members = member_overrides(p)
    extra = extra or {}
    plan: list[Member] = []
    for name, own in members.items():
        base = merge_overrides(common, own, cli, extra.get("*", []), extra.get(name, []))
        config_id = f"{slug(name)}-{config_hash(base)}"
        for seed in seeds:
            ovr = merge_overrides(base, [f"seed={seed}"])
            plan.append(Member(name, int(seed), config_id, f"{config_id}-s{seed}", ovr, own))
    return plan


def budget_overrides(p: SweepPreset, members: list[Member], proj: dict[str, dict[str, Any]], cli: list[str]):
    """Overrides that put the sweep on equal budgets, from the members' projections at their own budgets:
    {"*": [eval.every_rollouts=...], name: [budget.max_rollouts=R, budget.max_epochs=0, budget.max_steps=0]}.
    Matched members (all with budget=matched_rollouts, else `matched_members`) stop at R = `matched_rollouts`
    or the baseline's projected rollouts. With `eval_points`, every member evaluates every
    (smallest member's rollouts / eval_points) rollouts, rounded down to a multiple of the largest rollout batch."""
    if p.budget not in BUDGETS:
        raise ConfigError(f"budget={p.budget!r}: choose one of {', '.join(BUDGETS)} (sweep.budget or budget=)")
    names = list(dict.fromkeys(m.name for m in members))
    unknown = [n for n in p.matched_members if n not in names]
    if unknown:
        raise ConfigError(f"sweep.matched_members: {', '.join(unknown)} not a member; members: {', '.join(names)}")
    matched = names if p.budget == "matched_rollouts" else list(p.matched_members)
    extra: dict[str, list[str]] = {}
    first = {n: next(proj[m.run_id] for m in members if m.name == n) for n in names}
    totals = dict(first)
    if matched:
        r = p.matched_rollouts
        if not r:
            if not p.baseline or first[p.baseline]["rollouts"] is None:
                raise ConfigError("budget=matched_rollouts needs sweep.matched_rollouts or a baseline with a budget")
            r = int(first[p.baseline]["rollouts"])
        for n in matched:
            extra[n] = [f"budget.max_rollouts={r}", "budget.max_epochs=0", "budget.max_steps=0"]
            totals[n] = {**first[n], "rollouts": r}
    if p.eval_points > 0 and not any(override_key(o) == "eval.every_rollouts" for o in cli):
        known = [t["rollouts"] for t in totals.values() if t["rollouts"]]
        if known:
            every = max(1, min(known) // p.eval_points)
            batch = max(int(t["derived"].get("rollouts_per_rollout_batch", 1)) for t in totals.values())
            if every >= batch:
                every -= every % batch
            extra["*"] = [f"eval.every_rollouts={every}"]
    return extra


def load_preset(conf_dir: str, name: str, preset_overrides: list[str]) -> SweepPreset:
    from omegaconf import OmegaConf

    folder = Path(conf_dir) / "sweep"
    path = folder / f"{name}.yaml"
    if not path.is_file():
        options = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
        raise ConfigError(f"sweep={name}: no such preset; choose one of: {options}")
    alias = OmegaConf.load(path).get("alias")
    if alias:
        return load_preset(conf_dir, str(alias), preset_overrides)
    try:
        merged = OmegaConf.merge(
            OmegaConf.structured(SweepPreset), OmegaConf.load(path), OmegaConf.from_dotlist(preset_overrides)
        )
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except Exception as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(
            f"sweep preset {path.name}: {first} (fields: see two_grpo/study/sweep_plan.py SweepPreset)"
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
    from two_grpo.config.schema import derive

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
