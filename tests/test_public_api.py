"""The public surface: sorted __all__, no heavy imports from `import autoresearch`."""

from __future__ import annotations

import subprocess
import sys

import autoresearch


def test_all_is_sorted_and_complete() -> None:
    names = [n for n in autoresearch.__all__ if n != "__version__"]
    assert names == sorted(names)
    for name in (
        "Loop",
        "Objective",
        "Measurement",
        "RunResult",
        "Sandbox",
        "LocalSandbox",
        "Proposer",
        "Candidate",
        "Acceptance",
        "Status",
        "Ledger",
    ):
        assert name in autoresearch.__all__
        assert getattr(autoresearch, name) is not None


def test_import_pulls_no_heavy_libraries() -> None:
    code = (
        "import sys, autoresearch, autoresearch.testing\n"
        "heavy = ('torch', 'transformers', 'trl', 'vectorbt', 'openai', 'optuna', 'numba')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
