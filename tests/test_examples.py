"""The examples run as a user would run them, and do what they say: a loop of the asked
number of experiments that keeps the baseline and never does worse than it."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))
EXPERIMENTS = 3
# Every example ends with "baseline B -> best C ... {counts}".
SUMMARY = re.compile(r"^baseline (?P<base>\S+) -> best (?P<best>\S+) .*?(?P<counts>\{.*\})\)?$")
# What only the working example prints besides its summary.
OWN_OUTPUT = {
    "custom_objective.py": "check_objective: Measurement(primary=2.0",
    "custom_proposer.py": "check_proposer: ['X 0.0 -> ",
    "loop_from_python.py": f"#{EXPERIMENTS} ",
}


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script: Path, tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, str(script), "--experiments", str(EXPERIMENTS)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    last = res.stdout.strip().splitlines()[-1]
    m = SUMMARY.match(last)
    assert m, f"no summary line: {last!r}"
    counts = ast.literal_eval(m["counts"])
    assert sum(counts.values()) == EXPERIMENTS, counts  # every experiment was recorded
    assert counts["keep"] >= 1 and counts["crash"] == counts["invalid"] == 0, counts
    assert float(m["best"]) <= float(m["base"])
    assert OWN_OUTPUT.get(script.name, "") in res.stdout
