"""A forged `keep` row plus a moved branch plus a killed driver, the red team's ledger
attack: `--resume` checks the ledger against git and stops with a clear message. The
control resumes with the check turned off and shows the forgery would have stood."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest

from autoresearch import Candidate, Edit, Ledger, Loop, SessionError, Status
from autoresearch._workspace import Workspace
from autoresearch.proposers import Scripted
from autoresearch.testing import make_toy_domain

FORGED_RUN = 'print("---")\nprint("score: 0.100000")\n'


def _git(d: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=d, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _forge(d: Path, change: str) -> None:
    """What a candidate with write access to .git and the ledger does: a commit on the
    research branch changing `change` (a fixed file), a keep row for it, the branch moved."""
    tip = _git(d, "rev-parse", "autoresearch/t")
    wt = d.parent / "forge"
    _git(d, "worktree", "add", "-q", "--detach", str(wt), tip)
    (wt / change).write_text(FORGED_RUN if change == "run.py" else "X = 3.0\nY = 1.0\n")
    _git(wt, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-qam", "forged")
    forged = _git(wt, "rev-parse", "HEAD")
    _git(d, "worktree", "remove", "--force", str(wt))
    ledger = Ledger(d / ".autoresearch" / "ledger.sqlite")
    exp = ledger.begin("t", tip, "a great idea", "scripted")
    ledger.finish(exp, Status.KEEP, "kept", commit_sha=forged, value=0.1)
    ledger.set_tag_state("t", "interrupted")
    ledger.close()
    # And the run that "measured" it, so the incumbent's value is the forged one.
    with sqlite3.connect(d / ".autoresearch" / "ledger.sqlite") as db:
        db.execute(
            "INSERT INTO runs (experiment_id, tag, kind, commit_sha, seed, status, wall_s,"
            " peak_memory_mb, value, started_at) VALUES (?, 't', 'candidate', ?, 0, 'ok', 1, 1,"
            " 0.1, 0)",
            (exp, forged),
        )
    _git(d, "update-ref", "refs/heads/autoresearch/t", forged, tip)


def _started(tmp_path: Path) -> Path:
    d = make_toy_domain(tmp_path / "toy", git=True)
    first = Candidate("X to 2", (Edit("params.py", content="X = 2.0\nY = 1.0\n"),))
    Loop.from_dir(d, proposer=Scripted([first]), tag="t").run()
    return d


def test_a_forged_keep_that_changes_a_fixed_file_stops_the_resume(tmp_path: Path) -> None:
    d = _started(tmp_path)
    _forge(d, "run.py")
    with pytest.raises(SessionError, match=r"does not match git: .* changes run\.py"):
        Loop.from_dir(d, proposer=Scripted([]), resume=True).run()


def test_the_forgery_would_stand_without_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = _started(tmp_path)
    _forge(d, "run.py")
    monkeypatch.setattr(Workspace, "check_kept_chain", lambda self, base, kept: None)
    summary = Loop.from_dir(d, proposer=Scripted([]), resume=True).run()
    assert summary.best_value == pytest.approx(0.1)  # the forged score is the "best"


def test_a_keep_row_pointing_off_the_chain_stops_the_resume(tmp_path: Path) -> None:
    d = _started(tmp_path)
    ledger = Ledger(d / ".autoresearch" / "ledger.sqlite")
    base = ledger.tag_info("t").base_commit  # type: ignore[union-attr]
    exp = ledger.begin("t", base, "from nowhere", "scripted")
    # The base itself as a "candidate" commit: not a child of the last keep.
    ledger.finish(exp, Status.KEEP, "kept", commit_sha=base, value=0.1)
    ledger.close()
    with pytest.raises(SessionError, match="is not a child of the commit kept before it"):
        Loop.from_dir(d, proposer=Scripted([]), resume=True).run()
