"""gate_command: a user-style repository with a pytest suite, under the real loop."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from autoresearch import Candidate, Context, Edit, Loop, Status
from autoresearch._errors import BaselineFailed
from autoresearch._gate import fewer_tests, loader_files, parse_test_counts
from autoresearch._git import init_repo
from autoresearch._ledger import Ledger
from autoresearch.testing import Scripted

LIB = """\
SCORE = 1.0  # what the benchmark reports
CHECKED = True


def add(a, b):
    return a + b
"""
TESTS = """\
import pytest

import mylib


def test_add():
    assert mylib.add(2, 3) == 5


def test_add_negative():
    assert mylib.add(-2, 3) == 1


@pytest.mark.skipif(not hasattr(mylib, "CHECKED"), reason="not checked")
def test_checked():
    assert mylib.add(0, 0) == 0
"""
BENCH = """\
import mylib

print("---")
print(f"score: {mylib.SCORE}")
"""


def _repo(tmp_path: Path, gate: str = '"python -m pytest -q -p no:cacheprovider tests"') -> Path:
    d = tmp_path / "repo"
    (d / "tests").mkdir(parents=True)
    (d / "mylib.py").write_text(LIB)
    (d / "bench.py").write_text(BENCH)
    (d / "tests" / "test_mylib.py").write_text(TESTS)
    # "*.py" admits a conftest.py: the gate refuses it anyway.
    (d / "autoresearch.toml").write_text(
        textwrap.dedent(
            f"""\
            name = "user-repo"
            editable = ["*.py", "tests/*.py"]
            fixed = ["bench.py", "tests/**"]
            command = "python bench.py"
            time_budget_s = 60
            network = false
            gate_command = {gate}
            [objective]
            metric = "score"
            direction = "maximize"
            """
        )
    )
    init_repo(d)
    return d


class Recording(Scripted):
    """The scripted proposer, keeping every context it was shown."""

    def __init__(self, candidates: list[Candidate]) -> None:
        super().__init__(candidates)
        self.seen: list[Context] = []

    def propose(self, context: Context) -> Candidate | None:
        self.seen.append(context)
        return super().propose(context)


def _lib(score: float, body: str = LIB) -> str:
    return body.replace("SCORE = 1.0", f"SCORE = {score}")


def test_parse_test_counts_reads_pytest_and_plain_summaries() -> None:
    text = "....\n===== 1 failed, 10 passed, 2 skipped, 1 deselected in 0.52s =====\n"
    got = parse_test_counts(text)
    assert got is not None and got.passed == 10 and got.collected == 14
    plain = parse_test_counts("ran the suite\n12 passed, 0 failed\n")
    assert plain is not None and plain.passed == 12 and plain.collected == 12
    assert parse_test_counts("no summary here\n") is None
    empty = parse_test_counts("===== no tests ran in 0.01s =====")
    assert empty is not None and empty.collected == 0
    assert fewer_tests(plain, {"passed": 12}) is None
    why = fewer_tests(
        parse_test_counts("11 passed, 1 skipped"),  # type: ignore[arg-type]
        {"passed": 12},
    )
    assert why is not None and "fewer" in why


def test_loader_files() -> None:
    paths = [
        "a/conftest.py",
        "x.pth",
        "lib.py",
        "pytest.ini",
        "pyproject.toml",
        "s/sitecustomize.py",
    ]
    assert loader_files(paths) == [p for p in paths if p != "lib.py"]


@pytest.mark.slow
def test_gate_command_guards_a_user_repository(tmp_path: Path) -> None:
    d = _repo(tmp_path)
    skip_all = "import pytest\n\n\ndef pytest_collection_modifyitems(items):\n" + (
        "    for item in items:\n        item.add_marker(pytest.mark.skip)\n"
    )
    script = [
        # Better, and breaks a test: the metric keeps it, the gate does not.
        Candidate(
            "faster but wrong", (Edit("mylib.py", content=_lib(2.0).replace("a + b", "a - b")),)
        ),
        # Better, and a conftest.py that skips every test: refused before it runs.
        Candidate(
            "skip the suite",
            (Edit("mylib.py", content=_lib(2.0)), Edit("conftest.py", content=skip_all)),
        ),
        # Better, and edits the tests it is gated by: refused.
        Candidate(
            "relax the tests",
            (
                Edit("mylib.py", content=_lib(2.0)),
                Edit("tests/test_mylib.py", content=TESTS.replace("== 5", "!= 5")),
            ),
        ),
        # Better, and makes a test skip itself (exit 0): fewer tests pass than at the base.
        Candidate(
            "skip one test", (Edit("mylib.py", content=_lib(2.0).replace("CHECKED = True\n", "")),)
        ),
        # Better and correct: kept.
        Candidate("really better", (Edit("mylib.py", content=_lib(3.0)),)),
    ]
    proposer = Recording(script)
    Loop.from_dir(d, proposer=proposer, tag="g").run(max_experiments=1 + len(script))
    led = Ledger(d / ".autoresearch" / "ledger.sqlite")
    try:
        recs = led.records("g")
    finally:
        led.close()
    statuses = [r.status for r in recs]
    assert statuses == [
        Status.KEEP,
        Status.GATE_FAILED,
        Status.INVALID,
        Status.INVALID,
        Status.GATE_FAILED,
        Status.KEEP,
    ], [(r.status, r.reason) for r in recs]
    assert "gate_command" in recs[1].reason and "conftest.py" in recs[2].reason
    assert "fixed" in recs[3].reason
    assert "fewer than the unmodified code's" in recs[4].reason
    # The proposer was shown the failing test's output after the gate refused a keep.
    shown = proposer.seen[1].last_failure
    assert shown is not None and "gate_failed" in shown and "assert" in shown


@pytest.mark.slow
def test_a_suite_failing_on_the_unmodified_code_stops_the_run(tmp_path: Path) -> None:
    d = _repo(
        tmp_path,
        gate='["python -m pytest -q -p no:cacheprovider tests", "python -c \'exit(3)\'"]',
    )
    proposer = Scripted([Candidate("better", (Edit("mylib.py", content=_lib(2.0)),))])
    with pytest.raises(BaselineFailed, match="gate_command fails on the unmodified code"):
        Loop.from_dir(d, proposer=proposer, tag="b").run(max_experiments=2)
