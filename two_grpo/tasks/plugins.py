"""User code, loaded only when the config asks for it by name (never through `_target_` instantiation):

- `task.reward_fn=path/to/file.py:function` (and `task.reward_fns`): a reward function read from a file;
- `task.module=pkg.module:TaskClass`: a task class importable from the Python path;
- `task.name=NAME` where an installed package declares NAME in the `two_grpo.tasks` entry-point group.

Each load names what it ran (file or module and the object) on stderr, once per process that asks for it.
A missing file, module or object is a ConfigError (one line, exit 2).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from two_grpo.config.errors import ConfigError

ENTRY_POINT_GROUP = "two_grpo.tasks"
_announced: set[str] = set()


def announce(what: str) -> None:
    if what not in _announced:
        _announced.add(what)
        print(f"two-grpo: loading user code: {what}", file=sys.stderr, flush=True)


def load_function(spec: str, key: str = "task.reward_fn", quiet: bool = False) -> Callable[..., Any]:
    """`path/to/file.py:function` -> the function. The file runs as a module named after it."""
    path_text, _, name = spec.rpartition(":")
    path = Path(path_text).expanduser().resolve()
    if not path_text or not name or path.suffix != ".py":
        raise ConfigError(f"{key}={spec!r}: write it as path/to/file.py:function_name")
    if not path.is_file():
        raise ConfigError(f"{key}={spec!r}: no file {path}; give the path of a .py file")
    module_name = f"two_grpo_user_{path.stem}_{abs(hash(str(path))) % 10**8}"
    module = sys.modules.get(module_name)
    if module is None:
        loader_spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(loader_spec)  # type: ignore[arg-type]
        try:
            loader_spec.loader.exec_module(module)  # type: ignore[union-attr]
        except Exception as exc:
            raise ConfigError(f"{key}={spec!r}: {path} failed to import ({type(exc).__name__}: {exc})"[:400]) from None
        sys.modules[module_name] = module
    fn = getattr(module, name, None)
    if not callable(fn):
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise ConfigError(
            f"{key}={spec!r}: {path} has no function {name!r} (functions there: {', '.join(found) or 'none'})"
        )
    if not quiet:
        announce(f"reward function {name}() from {path}")
    return fn


def installed_tasks() -> dict[str, Any]:
    """Name -> entry point of every task in the `two_grpo.tasks` group of the installed packages."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def load_task_class(module_spec: str, name: str) -> type:
    """The class named by task.module (`pkg.module:TaskClass`), else the `two_grpo.tasks` entry point `name`."""
    if module_spec:
        mod_name, _, attr = module_spec.partition(":")
        try:
            module = importlib.import_module(mod_name)
        except ImportError as exc:
            raise ConfigError(
                f"task.module={module_spec!r}: cannot import {mod_name!r} ({exc}); install the package or add it to "
                "PYTHONPATH"
            ) from None
        cls = getattr(module, attr, None)
        if cls is None:
            raise ConfigError(f"task.module={module_spec!r}: module {mod_name!r} has no {attr!r}")
        announce(f"task class {attr} from module {mod_name} ({getattr(module, '__file__', '?')})")
        return cls
    ep = installed_tasks().get(name)
    if ep is None:
        raise ConfigError(f"task.name={name!r}: no such task installed under the {ENTRY_POINT_GROUP!r} entry points")
    try:
        cls = ep.load()
    except Exception as exc:
        raise ConfigError(f"task.name={name!r}: entry point {ep.value!r} failed to load ({exc})"[:400]) from None
    announce(f"task {name!r} = {ep.value} (entry point {ENTRY_POINT_GROUP})")
    return cls
