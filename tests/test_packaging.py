"""The wheel carries the objectives and the bundled domains, so a pip-installed user can run
`autoresearch run gpt_pretrain`."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_holds_objectives_and_bundled_domains(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("autoresearch-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    # The objectives install under autoresearch; site-packages gets no top-level `objectives`.
    assert "autoresearch/objectives/ml.py" in names
    assert not any(n.startswith("objectives/") for n in names)
    assert "autoresearch/_bundled_domains/trading_sharpe/objective.py" in names
    assert "autoresearch/_templates/minimal/evaluate.py" in names
    for domain in sorted(p.name for p in (ROOT / "domains").iterdir() if p.is_dir()):
        assert f"autoresearch/_bundled_domains/{domain}/autoresearch.toml" in names
        assert f"autoresearch/_bundled_domains/{domain}/program.md" in names
    assert not any("/.autoresearch/" in n or "__pycache__" in n for n in names)


def test_bundled_domain_is_copied_into_its_own_repository(tmp_path: Path) -> None:
    from autoresearch._domains import resolve_domain

    dest, note = resolve_domain("trading_sharpe", tmp_path / "work")
    assert (dest / "autoresearch.toml").is_file() and (dest / ".git").is_dir()
    assert note is not None and "copied" in note
    again, note = resolve_domain("trading_sharpe", tmp_path / "work")
    assert again == dest and note is not None and "using the working folder" in note
