"""The import rules of ARCHITECTURE.md, read from the source with ast."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "autoresearch"
PLUGINS = ("proposers", "acceptance", "execution")
# What the engine may import of a plug-in subpackage: its base module, and the registry.
ENGINE_MAY_IMPORT = {
    "autoresearch.proposers",
    "autoresearch.proposers._base",
    "autoresearch.acceptance",
    "autoresearch.acceptance._base",
    "autoresearch.execution",
    "autoresearch.execution._sandbox",
    "autoresearch.execution._proc",
}
# Engine modules a plug-in subpackage may import (the ones that define public types).
PLUGIN_MAY_IMPORT = {
    "autoresearch._types",
    "autoresearch._errors",
    "autoresearch._config",
    "autoresearch._registry",
    "autoresearch._scope",
    "autoresearch._layout",
}
FIELD_LIBRARIES = ("torch", "transformers", "trl", "vectorbt", "openai", "pandas", "numba")


def _imports(path: Path, top_level_only: bool = False) -> list[str]:
    """Every import in the file, lazy ones included; type-only ones (under TYPE_CHECKING)
    are not dependencies and are left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return out


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_engine_imports_no_domain_no_field_library_and_only_plugin_bases() -> None:
    # _docs.py writes the README's config reference from every model: a front-end like cli/.
    engine = [p for p in PKG.glob("_*.py") if p.name != "_docs.py"]
    assert len(engine) > 10
    bad = []
    for path in engine:
        for mod in _imports(path):
            top = mod.split(".")[0]
            if top in FIELD_LIBRARIES or top in ("domains", "objectives"):
                bad.append(f"{path.name}: {mod}")
            parts = mod.split(".")
            if top == "autoresearch" and len(parts) > 1 and not parts[1].startswith("_"):
                if mod not in ENGINE_MAY_IMPORT and parts[1] in (*PLUGINS, "objectives"):
                    bad.append(f"{path.name}: {mod}")
                if parts[1] in ("report", "cli", "testing", "harness"):
                    bad.append(f"{path.name}: {mod}")
    assert not bad, "the engine reaches past a plug-in's base module:\n" + "\n".join(bad)


def test_plugin_subpackages_import_only_the_engines_public_type_modules() -> None:
    bad = []
    for plugin in PLUGINS:
        for path in _files(PKG / plugin):
            for mod in _imports(path):
                parts = mod.split(".")
                if parts[0] != "autoresearch" or len(parts) < 2:
                    continue
                if parts[1].startswith("_") and mod not in PLUGIN_MAY_IMPORT:
                    bad.append(f"{path.relative_to(PKG)}: {mod}")
                if parts[1] in ("report", "cli", "testing", "harness"):
                    bad.append(f"{path.relative_to(PKG)}: {mod}")
    assert not bad, "a plug-in imports engine internals:\n" + "\n".join(bad)


def test_the_harness_kit_imports_nothing_of_autoresearch_and_no_field_library() -> None:
    files = _files(PKG / "harness")
    assert files, "autoresearch/harness is missing"
    bad = [
        f"{p.name}: {m}"
        for p in files
        for m in _imports(p)
        if m.split(".")[0] in ("autoresearch", *FIELD_LIBRARIES)
        and not (m == "autoresearch.harness" or m.startswith("autoresearch.harness."))
    ]
    assert not bad, bad


def test_nothing_outside_the_package_imports_its_private_modules() -> None:
    outside = [ROOT / d for d in ("objectives", "domains", "examples", "benchmarks")]
    bad = []
    for folder in outside:
        for path in _files(folder):
            for mod in _imports(path):
                parts = mod.split(".")
                if parts[0] == "autoresearch" and any(p.startswith("_") for p in parts[1:]):
                    bad.append(f"{path.relative_to(ROOT)}: {mod}")
    assert not bad, "import the public name instead:\n" + "\n".join(bad)


def test_the_rules_see_a_violation(tmp_path: Path) -> None:
    # The checks above read real imports: a planted one is found.
    planted = tmp_path / "m.py"
    planted.write_text("def f():\n    from autoresearch._loop import Loop\n")
    assert "autoresearch._loop" in _imports(planted)
