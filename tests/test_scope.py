"""Scope: a candidate may change only the editable files, inside its worktree, as text; a
run may change no committed file. Anything else is ``invalid`` and applies nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git, ledger_records

from autoresearch import Candidate, Cause, Edit, Loop, Status
from autoresearch.execution import LocalSandbox
from autoresearch.testing import FakeSandbox, Scripted


def test_scope_rules_make_invalid_and_apply_nothing(toy: Path) -> None:
    (toy / "link.py").symlink_to("/etc/hostname")
    git(toy, "add", "link.py")
    git(toy, "commit", "-qm", "link")
    bad = [
        Candidate("outside editable", (Edit("notes.txt", content="hi"),)),
        Candidate("traversal", (Edit("../escape.py", content="x"),)),
        Candidate("absolute", (Edit("/tmp/abs.py", content="x"),)),
        Candidate("fixed file", (Edit("run.py", content="print('---'); print('score: 0')"),)),
        Candidate("config", (Edit("autoresearch.toml", content=""),)),
        Candidate(
            "half bad", (Edit("params.py", content="X = 3\nY = 1\n"), Edit("run.py", content="x"))
        ),
        Candidate("search misses", (Edit("params.py", search="X = 9", replace="X = 1"),)),
        Candidate("no change", (Edit("params.py", search="X = 0.0", replace="X = 0.0"),)),
    ]
    summary = Loop.from_dir(
        toy,
        proposer=Scripted(bad),
        tag="scope",
        sandbox=FakeSandbox(),
        overrides={"editable": ["*.py"]},
    ).run()
    recs = ledger_records(toy)
    assert [r.status for r in recs[1:]] == [Status.INVALID] * len(bad)
    assert {r.cause for r in recs[1:]} == {Cause.SCOPE}
    reasons = [r.reason for r in recs[1:]]
    assert "outside the editable files" in reasons[0]
    assert "escapes" in reasons[1]
    assert "absolute" in reasons[2]
    assert "fixed" in reasons[3] and "fixed" in reasons[4] and "fixed" in reasons[5]
    assert "not found" in reasons[6]
    assert "changes nothing" in reasons[7]
    assert summary.best_value == pytest.approx(11.0)
    assert not (toy.parent / "escape.py").exists() and not Path("/tmp/abs.py").exists()


def test_symlinked_editable_path_is_refused(toy: Path) -> None:
    (toy / "sub").symlink_to(toy.parent)
    git(toy, "add", "sub")
    git(toy, "commit", "-qm", "sub")
    cand = Candidate("through a symlink", (Edit("sub/evil.py", content="x"),))
    Loop.from_dir(
        toy,
        proposer=Scripted([cand]),
        tag="sym",
        sandbox=FakeSandbox(),
        overrides={"editable": ["**/*.py"]},
    ).run()
    r = ledger_records(toy)[-1]
    assert r.status is Status.INVALID and "symlink" in r.reason
    assert not (toy.parent / "evil.py").exists()


def test_unwritable_or_unencodable_edits_are_invalid(toy: Path) -> None:
    through_file = Candidate("path through a file", (Edit("params.py/x.py", content="x"),))
    surrogate = Candidate("lone surrogate", (Edit("params.py", content="X = '\ud800'\n"),))
    x_to_3 = Candidate("X=3", (Edit("params.py", search="X = 0.0", replace="X = 3.0"),))
    Loop.from_dir(
        toy,
        proposer=Scripted([through_file, surrogate, x_to_3]),
        tag="w",
        sandbox=FakeSandbox(),
        overrides={"editable": ["**/*.py"]},
    ).run()
    recs = ledger_records(toy, "w")
    assert [r.status for r in recs] == [Status.KEEP, Status.INVALID, Status.INVALID, Status.KEEP]
    assert "cannot edit" in recs[1].reason and "not valid text" in recs[2].reason


def test_run_that_rewrites_a_fixed_file_is_invalid(toy: Path) -> None:
    """Unisolated, the after-run check finds the change (in namespaces the fixed file is
    read-only and the write fails the run: tests/test_baseline.py, tests/hostile)."""
    sneaky = Candidate(
        "rewrites the harness",
        (Edit("params.py", content="open('run.py', 'a').write('# tampered')\nX = 3.0\nY = 1.0\n"),),
    )
    Loop.from_dir(
        toy, proposer=Scripted([sneaky]), tag="tamper", sandbox=LocalSandbox("none")
    ).run()
    r = ledger_records(toy)[-1]
    assert r.status is Status.INVALID and "files changed during the run: run.py" in r.reason
    assert r.cause is Cause.FILES_CHANGED
    assert git(toy, "rev-parse", "autoresearch/tamper") == git(toy, "rev-parse", "HEAD")
