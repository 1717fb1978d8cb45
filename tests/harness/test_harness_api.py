"""The kit's public surface and its import rules (it runs inside the sandbox)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import autoresearch.harness as harness

KIT = Path(harness.__file__).parent
STDLIB = sys.stdlib_module_names


def test_all_is_sorted_and_exported() -> None:
    # ruff's order (RUF022): CONSTANTS, then Classes, then functions, each alphabetical.
    def kind(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2), name

    assert harness.__all__ == sorted(harness.__all__, key=kind)
    for name in harness.__all__:
        assert getattr(harness, name) is not None
    for name in ("call_isolated", "Worker", "IsolatedCallError", "print_summary", "start_budget"):
        assert name in harness.__all__


def test_the_kit_imports_only_stdlib_numpy_and_itself() -> None:
    for path in sorted(KIT.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                ok = top in STDLIB or top == "numpy" or name.startswith("autoresearch.harness")
                assert ok, f"{path.name} imports {name}"
                if top == "numpy":  # only inside functions: an evaluator without arrays
                    assert node.col_offset > 0 or path.name == "_child.py", path.name


def test_importing_the_kit_pulls_no_heavy_library() -> None:
    code = (
        "import sys, autoresearch.harness\n"
        "heavy = ('torch', 'pandas', 'vectorbt', 'openai', 'transformers')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
