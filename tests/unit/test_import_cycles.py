"""The package's import graph has no cycles (module-level and lazy imports alike). Run:
pytest tests/unit/test_import_cycles.py"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "two_grpo"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PKG.rglob("*.py")}


def resolve(name: str, known: dict[str, Path], base: str, level: int) -> str:
    """An absolute module name for `from <level dots><name>` inside module `base`."""
    if level:
        is_pkg = known[base].name == "__init__.py"
        parent = base.split(".")[: len(base.split(".")) - level + (1 if is_pkg else 0)]
        name = ".".join(parent + ([name] if name else []))
    return name


def edges(known: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its body (`from a.b import c` -> a.b.c when c is a
    submodule, else a.b)."""
    out: dict[str, set[str]] = {}
    for mod, path in known.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                src = resolve(node.module or "", known, mod, node.level)
                for a in node.names:
                    sub = f"{src}.{a.name}"
                    targets.append(sub if sub in known else src)
            for t in targets:
                while t and t not in known:  # `import two_grpo.x.y` names a module; keep the longest known prefix
                    t = t.rpartition(".")[0]
                if t and t != mod and t != "two_grpo":
                    deps.add(t)
        out[mod] = deps
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (depth-first search, white/grey/black)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_planted_cycle_and_accepts_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_from_import_of_a_submodule_resolves_to_the_submodule():
    known = modules()
    graph = edges(known)
    assert "two_grpo.algo.losses" in graph["two_grpo.learner.step"]  # `from two_grpo.algo.losses import`
    assert "two_grpo.algo" not in graph["two_grpo.learner.step"]


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(edges(modules()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
