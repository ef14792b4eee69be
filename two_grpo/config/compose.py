"""Composition of conf/ with command-line overrides into a validated TrainConfig, and one-line config errors.

Used by every subcommand (train, build-model, eval, sweep, probe, explain); imports nothing heavy at module level.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any


def conf_dir() -> str:
    here = Path(__file__).resolve().parents[1]  # two_grpo/
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError("two_grpo: config folder not found (expected two_grpo/conf or <repo>/conf)")


def _known_keys(node: Any, prefix: str = "") -> list[str]:
    from omegaconf import DictConfig

    keys = []
    for k in node.keys() if isinstance(node, DictConfig) else []:
        full = f"{prefix}{k}"
        keys.append(full)
        child = node._get_node(k)
        if isinstance(child, DictConfig):
            keys += _known_keys(child, full + ".")
    return keys


def format_config_error(exc: BaseException, overrides: list[str]) -> str:
    """One line naming the key and what to do, from a Hydra/OmegaConf exception."""
    from omegaconf import OmegaConf

    from two_grpo.config.peer_names import peer_hint
    from two_grpo.config.schema import TrainConfig

    chain = [exc]
    while chain[-1].__cause__ is not None and len(chain) < 5:
        chain.append(chain[-1].__cause__)
    text = " | ".join(str(e) for e in chain)
    schema_keys = _known_keys(OmegaConf.structured(TrainConfig))
    m = re.search(r"Could not override '([^']+)'", text) or re.search(r"Key '([^']+)' not in '", text)
    m2 = re.search(r"full_key: ([\w.]+)", text)
    if m and ("not in struct" in text or "Could not override" in text or "not in '" in text):
        key = m.group(1)
        if m2 and "Key '" in text:
            key = m2.group(1)
        typed_keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o]
        full = next((k for k in typed_keys if k == key or k.startswith(key + ".")), key)  # as the user typed it
        peer = peer_hint(full)
        if peer:
            return f"unknown config key '{full}': {peer} (the README's table maps TRL's and verl's names)"
        close = difflib.get_close_matches(key, schema_keys, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return f"unknown config key '{key}': {hint}(list the keys with `two-grpo train --cfg job`)"
    m = re.search(r"Value '([^']*)' (?:of type '\w+' )?could not be converted to (\w+)", text)
    if m and m2:
        return f"{m2.group(1)}={m.group(1)!r}: wrong type, expected {m.group(2).lower()}"
    m = re.search(r"Could not find '([\w]+)/([^']+)'", text)
    if m:
        group, option = m.groups()
        folder = Path(conf_dir()) / group
        options = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
        return f"{group}={option}: no such config; choose one of: {', '.join(options) or '(none)'}"
    first = str(chain[-1]).strip().splitlines()[0] if str(chain[-1]).strip() else type(chain[-1]).__name__
    where = f" (key {m2.group(1)})" if m2 else ""
    return f"invalid config{where}: {first}; overrides were: {' '.join(overrides) or '(none)'}"


def compose(overrides: list[str]):
    """Compose conf/train.yaml with `overrides` -> (DictConfig with hydra node). Raises on bad input."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from two_grpo.config.schema import register_schemas

    register_schemas()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3", job_name="train"):
        return hydra_compose(config_name="train", overrides=overrides, return_hydra_config=True)


def to_train_config(cfg: Any):
    """DictConfig (without the hydra node) -> validated TrainConfig."""
    from omegaconf import OmegaConf

    from two_grpo.config.schema import TrainConfig, reject_instantiation_keys, validate

    plain = OmegaConf.masked_copy(cfg, [k for k in cfg.keys() if k != "hydra"])
    reject_instantiation_keys(plain)
    typed: TrainConfig = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(TrainConfig), plain))  # type: ignore[assignment]
    validate(typed)
    return typed


def is_config_exception(exc: BaseException) -> bool:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return isinstance(exc, (HydraException, OmegaConfBaseException))
