"""gate_command beyond the basics: `init --gate-command`, a flaky suite and `gate_retries`,
and an Objective's own gate beside gate_command (both must pass)."""

from __future__ import annotations

import textwrap
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoresearch import (
    Candidate,
    Edit,
    GateResult,
    Loop,
    MetricObjective,
    RunResult,
    Status,
    load_config,
)
from autoresearch._errors import BaselineFailed
from autoresearch._git import init_repo
from autoresearch._ledger import Ledger
from autoresearch.cli import app
from autoresearch.testing import Scripted

# Fails on the first attempt in a fresh worktree, passes on the next one: a flaky suite.
FLAKY_TEST = """\
from pathlib import Path

import mylib


def test_add_is_flaky_once():
    marker = Path("flaky.marker")
    first = not marker.exists()
    marker.write_text("tried")
    assert not first, "the first attempt fails"
    assert mylib.add(2, 3) == 5
"""


def _repo(tmp_path: Path, retries: int) -> Path:
    d = tmp_path / "repo"
    (d / "tests").mkdir(parents=True)
    (d / "mylib.py").write_text("SCORE = 1.0\n\n\ndef add(a, b):\n    return a + b\n")
    (d / "bench.py").write_text('import mylib\n\nprint("---")\nprint(f"score: {mylib.SCORE}")\n')
    (d / "tests" / "test_mylib.py").write_text(FLAKY_TEST)
    (d / "autoresearch.toml").write_text(
        textwrap.dedent(
            f"""\
            name = "flaky"
            editable = ["mylib.py"]
            fixed = ["bench.py", "tests/**"]
            command = "python bench.py"
            time_budget_s = 60
            network = false
            gate_command = "python -m pytest -q -p no:cacheprovider tests"
            gate_retries = {retries}
            [objective]
            metric = "score"
            direction = "maximize"
            """
        )
    )
    init_repo(d)
    return d


def _better() -> Candidate:
    return Candidate("better", (Edit("mylib.py", search="SCORE = 1.0", replace="SCORE = 2.0"),))


def _records(d: Path, tag: str):  # type: ignore[no-untyped-def]
    led = Ledger(d / ".autoresearch" / "ledger.sqlite")
    try:
        return led.records(tag)
    finally:
        led.close()


def test_init_writes_gate_commands_that_load(tmp_path: Path) -> None:
    d = tmp_path / "proj"
    d.mkdir()
    (d / "bench.py").write_text("print('---'); print('score: 1')\n")
    (d / "lib.py").write_text("X = 1\n")
    args = ["init", str(d), "--editable", "lib.py", "--fixed", "bench.py"]
    args += ["--command", "python bench.py", "--metric", "score", "--direction", "maximize"]
    args += ["--gate-command", "python -m pytest -q", "--gate-command", "python -m mypy lib.py"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    raw = tomllib.loads((d / "autoresearch.toml").read_text())
    assert raw["gate_command"] == ["python -m pytest -q", "python -m mypy lib.py"]
    assert load_config(d)[0].gate_commands == ("python -m pytest -q", "python -m mypy lib.py")


def test_an_empty_gate_command_is_a_config_error(tmp_path: Path) -> None:
    d = tmp_path / "repo"
    d.mkdir()
    (d / "autoresearch.toml").write_text(
        'name = "x"\neditable = ["a.py"]\ncommand = "true"\ngate_command = ["  "]\n'
        '[objective]\nmetric = "m"\ndirection = "maximize"\n'
    )
    with pytest.raises(Exception, match="gate_command"):
        load_config(d)


@pytest.mark.slow
def test_a_flaky_suite_stops_the_run_without_retries_and_passes_with_one(tmp_path: Path) -> None:
    strict = _repo(tmp_path / "strict", retries=0)
    with pytest.raises(BaselineFailed, match="gate_retries \\(now 0\\)"):
        Loop.from_dir(strict, proposer=Scripted([_better()]), tag="f").run(max_experiments=2)
    assert [r.status for r in _records(strict, "f")] == [Status.GATE_FAILED]

    tolerant = _repo(tmp_path / "tolerant", retries=1)
    Loop.from_dir(tolerant, proposer=Scripted([_better()]), tag="f").run(max_experiments=2)
    recs = _records(tolerant, "f")
    assert [r.status for r in recs] == [Status.KEEP, Status.KEEP], [r.reason for r in recs]
    # Each gate took two attempts: the worktree is reset before the gate, so the marker the
    # first attempt wrote never survives from one experiment to the next.
    folder = tolerant / ".autoresearch" / "runs" / "f" / str(recs[1].id)
    assert len(list(folder.glob("gate-run*.log"))) == 2


class RefusesScoreThree(MetricObjective):
    """An Objective's own gate: refuses a SCORE of 3 (the test suite passes for it)."""

    def gate(self, run: RunResult) -> GateResult:
        if "SCORE = 3.0" in (run.workdir / "mylib.py").read_text():
            return GateResult(False, "SCORE 3 is not allowed")
        return GateResult(True)


@pytest.mark.slow
def test_the_objectives_gate_and_gate_command_must_both_pass(tmp_path: Path) -> None:
    d = _repo(tmp_path, retries=1)
    script = [
        Candidate("three", (Edit("mylib.py", search="SCORE = 1.0", replace="SCORE = 3.0"),)),
        Candidate(
            "two, but broken",
            (
                Edit("mylib.py", search="SCORE = 1.0", replace="SCORE = 2.0"),
                Edit("mylib.py", search="a + b", replace="a * b"),
            ),
        ),
        _better(),
    ]
    Loop.from_dir(d, proposer=Scripted(script), objective=RefusesScoreThree("score"), tag="b").run(
        max_experiments=4
    )
    recs = _records(d, "b")
    assert [r.status for r in recs] == [
        Status.KEEP,
        Status.GATE_FAILED,
        Status.GATE_FAILED,
        Status.KEEP,
    ], [r.reason for r in recs]
    assert "SCORE 3 is not allowed" in recs[1].reason
    assert "gate_command" in recs[2].reason
