"""The README stays true: its config reference is the code's, and CI runs its test command."""

from __future__ import annotations

import re
from pathlib import Path

from autoresearch._docs import END, START, config_reference

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_current() -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split(START, 1)[1].split(END, 1)[0]
    assert section.strip() == config_reference().strip(), (
        "README config reference is stale: run `python -m autoresearch._docs`"
    )


def test_ci_runs_the_readme_test_command() -> None:
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    test_command = next(b for b in blocks if "pytest" in b)
    ci_lines = [
        ln
        for ln in (ROOT / ".ci" / "run").read_text().splitlines()
        if ln and not ln.startswith(("#", "set ", "cd "))
    ]
    assert ci_lines == [test_command]
