"""The package's shape: layer folders, few top-level modules, short signatures, a short trainer. Run:
pytest tests/unit/test_layout.py"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "two_grpo"
MAX_TOP_LEVEL_MODULES = 8  # beside cli.py and __init__.py
MAX_PARAMS = 8  # excluding self / cls; *args and **kwargs count one each
MAX_TRAINER_LINES = 300


def test_at_most_eight_modules_at_the_top_level():
    top = sorted(p.name for p in PKG.glob("*.py") if p.name not in ("cli.py", "__init__.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, f"{len(top)} top-level modules (move them into a layer folder): {top}"


def test_every_folder_of_the_package_is_a_package():
    for d in PKG.iterdir():
        if d.is_dir() and d.name not in ("__pycache__", "conf") and any(d.glob("*.py")):
            assert (d / "__init__.py").is_file(), f"{d.name}/ has no __init__.py"


def n_params(fn: ast.FunctionDef | ast.AsyncFunctionDef, in_class: bool) -> int:
    a = fn.args
    positional = a.posonlyargs + a.args
    is_static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in fn.decorator_list)
    if in_class and positional and not is_static:
        positional = positional[1:]  # self / cls
    return len(positional) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)


def long_signatures(tree: ast.AST) -> list[tuple[str, int, int]]:
    out = []

    def walk(node: ast.AST, in_class: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = n_params(child, in_class)
                if n > MAX_PARAMS:
                    out.append((child.name, child.lineno, n))
                walk(child, False)
            elif isinstance(child, ast.ClassDef):
                walk(child, True)
            else:
                walk(child, in_class)

    walk(tree, False)
    return out


def test_the_parameter_counter_counts_by_hand():
    tree = ast.parse(
        "def f(a, b, c, d, e, f, g, h, i): pass\n"  # 9: too many
        "class C:\n"
        "    def m(self, a, b, c, d, e, f, g, h): pass\n"  # 8 beside self: fine
        "    @staticmethod\n"
        "    def s(a, b, c, d, e, f, g, *args, **kw): pass\n"  # 9 with *args and **kw: too many
        "def k(a, *, b, c, d, e, f, g, h): pass\n"  # 8: fine
    )
    assert [(name, n) for name, _, n in long_signatures(tree)] == [("f", 9), ("s", 9)]


def test_no_function_takes_more_than_eight_parameters():
    found = []
    for path in sorted(PKG.rglob("*.py")):
        for name, line, n in long_signatures(ast.parse(path.read_text())):
            found.append(f"{path.relative_to(PKG)}:{line} {name} takes {n}")
    assert not found, f"group options into a small dataclass (at most {MAX_PARAMS} parameters): {found}"


def test_the_trainer_stays_short():
    n = len((PKG / "run" / "trainer.py").read_text().splitlines())
    assert n <= MAX_TRAINER_LINES, f"run/trainer.py has {n} lines (at most {MAX_TRAINER_LINES})"
