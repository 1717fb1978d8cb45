"""A candidate that leaves a huge worktree (many files) costs the loop a rename, never the next
run's time: the tree goes to the state folder's trash and is deleted in the background; and a
folder past the file-count limit fails its run like one past disk_limit_mb."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

from autoresearch import Candidate, Edit, Ledger, Loop, RunSpec, Status
from autoresearch.execution import LocalSandbox, _launch
from autoresearch.proposers import Scripted
from autoresearch.testing import make_toy_domain

MANY = """\
import pathlib
d = pathlib.Path("junk")
d.mkdir(exist_ok=True)
for i in range({n}):
    (d / str(i)).touch()
X = 2.0
Y = 1.0
"""


def test_a_huge_worktree_goes_to_the_trash_and_is_deleted_in_the_background(
    tmp_path: Path,
) -> None:
    toy = make_toy_domain(tmp_path / "toy", git=True)
    many = Candidate("many files", (Edit("params.py", content=MANY.format(n=5000)),))
    plain = Candidate("X to 2.5", (Edit("params.py", content="X = 2.5\nY = 1.0\n"),))
    Loop.from_dir(toy, proposer=Scripted([many, plain]), tag="t").run()
    statuses = [r.status for r in Ledger(toy / ".autoresearch" / "ledger.sqlite").history("t")]
    assert statuses == [Status.KEEP, Status.KEEP, Status.KEEP]
    worktrees = toy / ".autoresearch" / "worktrees"
    assert not any(worktrees.iterdir()), "a worktree was left in place"
    trash = toy / ".autoresearch" / "trash"
    deadline = time.monotonic() + 60
    while any(trash.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(trash.iterdir()), "the background delete never finished"


@pytest.mark.parametrize("limit", [500, None])
def test_too_many_files_fail_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int | None
) -> None:
    monkeypatch.setattr(_launch, "MAX_FILES", limit or 10**9)
    work = tmp_path / "work"
    work.mkdir()
    (work / "many.py").write_text(MANY.format(n=2000))
    spec = RunSpec(
        workdir=work,
        command=f"{sys.executable} many.py",
        log_path=tmp_path / "run.log",
        time_budget_s=20,
        timeout_s=30,
        disk_limit_mb=1000,
    )
    run = LocalSandbox().run(spec)
    if limit is None:
        assert run.ok, run.reason
    else:
        # Caught while it writes (or at the end): never a silent pass.
        assert not run.ok and re.search(r"hold \d+ files and folders \(at most 500\)", run.reason)
