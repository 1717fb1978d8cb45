"""The public surface: `__all__` equals each public module's public names (sorted), every
object shows its public path, and `import autoresearch` pulls in no heavy library."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
import types

import pytest

import autoresearch

PUBLIC_MODULES = (
    "autoresearch",
    "autoresearch.proposers",
    "autoresearch.proposers.llm",
    "autoresearch.acceptance",
    "autoresearch.execution",
    "autoresearch.harness",
    "autoresearch.testing",
)


def _public_names(module: types.ModuleType) -> set[str]:
    # What a user can reach: every non-underscore name the module defines or re-exports,
    # except the modules of its own package and `from __future__` features.
    out = set()
    for name in dir(module):  # dir() also lists the names a lazy module imports on use
        if name.startswith("_") or name == "annotations":
            continue
        value = getattr(module, name)
        if isinstance(value, types.ModuleType):
            # A subpackage counts only where the module chose to export it.
            own = value.__name__.startswith(module.__name__ + ".")
            if own and name in getattr(module, "__all__", ()):
                out.add(name)
            continue
        out.add(name)
    return out


def _ruff_order(name: str) -> tuple[int, str]:
    # The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions and modules.
    if name.isupper() and len(name) > 1:
        return 0, name
    return (1 if name[:1].isupper() else 2), name


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_equals_the_public_names_and_is_sorted(name: str) -> None:
    module = importlib.import_module(name)
    declared = [n for n in module.__all__ if n != "__version__"]
    assert declared == sorted(declared, key=_ruff_order), f"{name}.__all__ is not sorted"
    assert set(declared) == _public_names(module), (
        f"{name}: in __all__ but not public: {set(declared) - _public_names(module)}; "
        f"public but not in __all__: {_public_names(module) - set(declared)}"
    )


@pytest.mark.parametrize(
    "name", ("autoresearch", "autoresearch.proposers", "autoresearch.acceptance")
)
def test_classes_and_functions_show_their_public_path(name: str) -> None:
    module = importlib.import_module(name)
    wrong = [
        f"{n}: {obj.__module__}"
        for n in module.__all__
        if (
            (inspect.isclass(obj := getattr(module, n)) or inspect.isfunction(obj))
            and not obj.__module__.startswith("autoresearch")
        )
        or ((inspect.isclass(obj) or inspect.isfunction(obj)) and "._" in obj.__module__)
    ]
    assert not wrong, wrong


def test_plugin_authors_find_every_error_and_base_class_at_the_top() -> None:
    for name in (
        "ConfigError",
        "SessionError",
        "WorkspaceError",
        "ScopeError",
        "ProposalError",
        "BudgetExhausted",
        "MetricMissing",
        "BaselineFailed",
        "Interrupted",
        "Objective",
        "Proposer",
        "Acceptance",
        "Sandbox",
        "parse_summary",
    ):
        assert name in autoresearch.__all__, name
    assert issubclass(autoresearch.BudgetExhausted, autoresearch.ProposalError)
    assert autoresearch.proposers.LLM.__module__ == "autoresearch.proposers"
    assert autoresearch.acceptance.Sequential.__module__ == "autoresearch.acceptance"


def test_import_pulls_no_heavy_libraries() -> None:
    code = (
        "import sys, autoresearch, autoresearch.testing, autoresearch.harness\n"
        "heavy = ('torch', 'transformers', 'trl', 'vectorbt', 'openai', 'optuna', 'numba')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
