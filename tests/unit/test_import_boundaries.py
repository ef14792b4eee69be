"""Import boundaries: algo/ imports only torch; tasks/ never torch.distributed/vllm/deepspeed; the core imports
without heavy backends. Run: pytest tests/unit/test_import_boundaries.py"""

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "two_grpo"


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_algo_imports_only_torch_and_stdlib():
    for f in (PKG / "algo").glob("*.py"):
        for name in imports_of(f):
            root = name.split(".")[0]
            assert root in {"torch", "__future__", "math", "typing", "collections"}, f"{f.name} imports {name}"


def test_heavy_backends_stay_behind_their_adapters():
    for f in PKG.rglob("*.py"):
        rel = f.relative_to(PKG).as_posix()
        for name in imports_of(f):
            if name.split(".")[0] == "vllm":
                assert rel == "rollout/vllm_engine.py", rel
            if name.split(".")[0] == "deepspeed":
                assert rel.startswith("learner/"), rel
            if name.split(".")[0] == "peft":  # the `lora` extra
                assert rel == "models/lora.py", rel
            if rel.startswith("tasks/"):
                assert not name.startswith(("torch.distributed", "vllm", "deepspeed")), rel


def test_cli_import_is_light():
    code = (
        "import sys, two_grpo.cli; print(any(m in sys.modules for m in ('torch', 'transformers', 'vllm', 'deepspeed')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
