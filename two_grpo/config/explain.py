"""`two-grpo train --help [KEY]` and `two-grpo explain KEY`: the schema's own words about its keys.

Meanings are the end-of-line comments of the dataclass fields in config.py (read with `tokenize` + `ast`, so the
schema stays the one place they are written), falling back to conf/train.yaml's comments. Defaults are those of
the composed default config (conf/train.yaml and its groups), which can differ from the dataclass default;
allowed values come from config.CHOICES, config groups from the conf/ folders.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import io
import tokenize
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The knobs a first run touches, in the order `train --help` lists them.
HEADLINE = (
    "group_size",
    "lr",
    "prompts_per_rollout",
    "prompts_per_minibatch",
    "seed",
    "budget.max_steps",
    "budget.max_wallclock_s",
    "model.path",
    "model.lora.r",
    "rollout.backend",
    "rollout.max_response_tokens",
    "rollout.temperature",
    "algo.advantage",
    "algo.kl_coef",
    "learner.backend",
    "eval.prompts",
    "logger.backend",
    "checkpoint.every_steps",
)


NOT_TRAIN_GROUPS = ("sweep",)  # conf/sweep holds `two-grpo sweep` presets, not a `train` group


@dataclass(frozen=True)
class KeyDoc:
    key: str
    type: str
    default: Any  # of the composed default config
    schema_default: Any
    allowed: tuple[str, ...]
    meaning: str


def _field_comments(source: str) -> dict[tuple[str, str], str]:
    """(class name, field name) -> the comment at the end of the field's line in `source`."""
    comments = {tok.start[0]: tok.string.lstrip("#").strip() for tok in _tokens(source) if tok.type == tokenize.COMMENT}
    out: dict[tuple[str, str], str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    line = item.end_lineno or item.lineno
                    if line in comments:
                        out[(node.name, item.target.id)] = comments[line]
    return out


def _tokens(source: str) -> list[tokenize.TokenInfo]:
    return list(tokenize.generate_tokens(io.StringIO(source).readline))


def _yaml_comments(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if ":" in line and "#" in line and not line.startswith((" ", "#")):
            key, rest = line.split(":", 1)
            out[key.strip()] = rest.split("#", 1)[1].strip()
    return out


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def schema_docs() -> dict[str, KeyDoc]:
    """Every leaf key of TrainConfig -> KeyDoc."""
    from omegaconf import OmegaConf

    from two_grpo.config import schema as config
    from two_grpo.config.compose import compose, conf_dir

    comments = _field_comments(Path(config.__file__).read_text())
    yaml_comments = _yaml_comments(Path(conf_dir()) / "train.yaml")
    composed = OmegaConf.to_container(compose([]), resolve=False)
    out: dict[str, KeyDoc] = {}

    def walk(cls: Any, prefix: str, defaults: Any) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            key, tp = f"{prefix}{f.name}", hints[f.name]
            value = defaults.get(f.name) if isinstance(defaults, dict) else None
            if dataclasses.is_dataclass(tp):
                walk(tp, key + ".", value)
                continue
            schema_default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            meaning = comments.get((cls.__name__, f.name)) or (yaml_comments.get(key, "") if not prefix else "")
            out[key] = KeyDoc(key, _type_name(tp), value, schema_default, config.CHOICES.get(key, ()), meaning)

    walk(config.TrainConfig, "", composed)
    return out


def config_groups() -> dict[str, tuple[list[str], str]]:
    """conf/<group>/*.yaml -> (options, the default picked in conf/train.yaml)."""
    import yaml

    root = Path(__import__("two_grpo.config.compose", fromlist=["conf_dir"]).conf_dir())
    chosen: dict[str, str] = {}
    for item in yaml.safe_load((root / "train.yaml").read_text()).get("defaults", []):
        if isinstance(item, dict):
            chosen.update({k: str(v) for k, v in item.items()})
    return {
        d.name: (sorted(p.stem for p in d.glob("*.yaml")), chosen.get(d.name, ""))
        for d in sorted(root.iterdir())
        if d.is_dir() and any(d.glob("*.yaml")) and d.name not in NOT_TRAIN_GROUPS
    }


def _fmt(value: Any) -> str:
    return '""' if value == "" else str(value)


def train_help() -> str:
    docs = schema_docs()
    lines = [
        "usage: two-grpo train [KEY=VALUE ...] [GROUP=OPTION ...] [--cfg job] [-m KEY=A,B ...]",
        "",
        "Compose conf/train.yaml with your overrides and train. Headline knobs (default in brackets):",
    ]
    width = max(len(k) for k in HEADLINE)
    for key in HEADLINE:
        d = docs[key]
        lines.append(f"  {key:<{width}}  [{_fmt(d.default)}]  {d.meaning}")
    lines += ["", "Config groups (GROUP=OPTION; * = default):"]
    for group, (options, default) in config_groups().items():
        shown = " ".join(f"{o}*" if o == default else o for o in options)
        lines.append(f"  {group:<11} {shown}")
    lines += [
        "",
        "  two-grpo train --help KEY     one key: type, default, allowed values, meaning (also: two-grpo explain KEY)",
        "  two-grpo train --help algo    every key under algo.",
        "  two-grpo train --cfg job      the whole composed config",
        "  two-grpo train -m group_size=2,16 seed=0,1,2   a sweep: each member in its own process (see README)",
        "  resume=RUN_DIR                resume a run; raise budget.max_steps on a finished run to extend it",
    ]
    return "\n".join(lines)


def explain(key: str) -> tuple[str, bool]:
    """-> (text, found). A section (`algo`) lists its keys; a group also lists its options."""
    docs = schema_docs()
    key = key.strip()
    if key in docs:
        d = docs[key]
        lines = [f"{d.key}  ({d.type})", f"  default: {_fmt(d.default)}"]
        if d.default != d.schema_default:
            lines[-1] += f"  (conf/ sets it; the schema's own default is {_fmt(d.schema_default)})"
        if d.allowed:
            lines.append(f"  allowed: {' | '.join(d.allowed)}")
        lines.append(f"  meaning: {d.meaning or '(no description in the schema)'}")
        return "\n".join(lines), True
    under = [k for k in docs if k.startswith(key + ".")]
    if under:
        groups = config_groups()
        lines = []
        if key in groups:
            options, default = groups[key]
            lines.append(f"{key}=OPTION: {' '.join(f'{o}*' if o == default else o for o in options)}  (* = default)")
        width = max(len(k) for k in under)
        lines += [f"  {k:<{width}}  [{_fmt(docs[k].default)}]  {docs[k].meaning}" for k in under]
        return "\n".join(lines), True
    from two_grpo.config.peer_names import peer_hint

    hint = peer_hint(key)
    if hint is None:
        close = difflib.get_close_matches(key, list(docs), n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'?" if close else "list the keys with `two-grpo train --cfg job`"
    return f"two-grpo: error: unknown config key '{key}': {hint}", False
