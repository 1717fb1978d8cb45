"""A candidate that plants a module beside the fixed evaluator (a json.py that prints a
forged summary) or rewrites a fixed file during its run gets nothing: the evaluator runs
with the candidate's folder off sys.path, imports its own modules from a pristine copy of
the fixed files, and runs only if the fixed files are what they were before the command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from autoresearch import Candidate, Edit, Ledger, Loop, Status
from autoresearch.execution import LocalSandbox
from autoresearch.proposers import Scripted
from autoresearch.testing import make_toy_domain

EVALUATE = """\
import json

import scoring  # a fixed module of the domain, imported by the evaluator

with open("model.json") as f:
    x = json.load(f)["x"]
print("---")
print(f"score: {scoring.score(x):.6f}")
"""
SCORING = "def score(x):\n    return (x - 3) ** 2 + 1\n"
TRAIN = "import json\nX = 0.0\njson.dump({'x': X}, open('model.json', 'w'))\n"
FORGE = 'print("---"); print("score: 0.010000"); raise SystemExit(0)\n'


def _domain(tmp_path: Path) -> Path:
    d = make_toy_domain(tmp_path / "toy", git=False)
    (d / "params.py").unlink()
    (d / "train.py").write_text(TRAIN)
    (d / "evaluate.py").write_text(EVALUATE)
    (d / "scoring.py").write_text(SCORING)
    cfg = (d / "autoresearch.toml").read_text()
    cfg = cfg.replace('editable = ["params.py"]', 'editable = ["train.py"]')
    cfg = cfg.replace('fixed = ["run.py"]', 'fixed = ["run.py", "evaluate.py", "scoring.py"]')
    cfg = cfg.replace(
        'command = "python run.py"',
        'command = "python train.py"\neval_command = "python evaluate.py"',
    )
    (d / "autoresearch.toml").write_text(cfg)
    return d


def _train(x: float, extra: str = "") -> str:
    return f"import json\n{extra}\njson.dump({{'x': {x}}}, open('model.json', 'w'))\n"


def test_a_planted_json_module_does_not_forge_the_evaluator(tmp_path: Path) -> None:
    d = _domain(tmp_path)
    plant = f"open('json.py', 'w').write({FORGE!r})"
    forger = Candidate("plant json.py", (Edit("train.py", content=_train(-4.0, plant)),))
    Loop.from_dir(d, proposer=Scripted([forger]), tag="t").run()
    rec = Ledger(d / ".autoresearch" / "ledger.sqlite").history("t")[-1]
    # The real score of x=-4 is 50: recorded as such (a discard), never the forged 0.01.
    assert rec.status is Status.DISCARD and rec.value == 50.0
    # Control: the same evaluator, run the ordinary way in a folder with that json.py, is
    # fooled.
    work = tmp_path / "control"
    work.mkdir()
    for name in ("evaluate.py", "scoring.py"):
        (work / name).write_text((d / name).read_text())
    (work / "json.py").write_text(FORGE)
    out = subprocess.run([sys.executable, "evaluate.py"], cwd=work, capture_output=True, text=True)
    assert "score: 0.010000" in out.stdout


def test_a_fixed_module_rewritten_during_the_run_never_reaches_the_evaluator(
    tmp_path: Path, isolation: str
) -> None:
    d = _domain(tmp_path)
    # The command rewrites the scorer the evaluator imports. In namespaces the scorer is
    # read-only (the write fails the run); without them the evaluator does not run on it
    # (its fixed files changed) and the experiment is invalid.
    swap = (
        "import pathlib\n"
        "pathlib.Path('scoring.py').write_text('def score(x):\\n    return 0.01\\n')\n"
    )
    keep_swapped = Candidate("swap scoring", (Edit("train.py", content=_train(-4.0, swap)),))
    sandbox = LocalSandbox(isolation)  # type: ignore[arg-type]
    Loop.from_dir(d, proposer=Scripted([keep_swapped]), tag="t", sandbox=sandbox).run()
    rec = Ledger(d / ".autoresearch" / "ledger.sqlite").history("t")[-1]
    if isolation == "namespaces":
        assert rec.status is Status.CRASH and rec.log_path is not None
        assert "Read-only file system" in Path(rec.log_path).read_text()
    else:
        assert rec.status is Status.INVALID and "scoring.py" in rec.reason
    assert rec.value is None
