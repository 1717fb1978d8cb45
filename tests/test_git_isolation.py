"""The user's repository: the caller's git variables never reach it, and engine state and
ignored files in the folder never block or enter a run."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import commit_all, git, ledger_records, set_x

from autoresearch import Candidate, Edit, Loop, Status
from autoresearch.testing import FakeSandbox, Scripted, make_toy_domain


def test_git_variables_of_the_caller_never_reach_the_users_index(
    toy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_INDEX_FILE", str(toy / ".git" / "index"))
    monkeypatch.setenv("GIT_DIR", str(toy / ".git"))
    helper = Candidate(
        "add a helper",
        (
            Edit("helper.py", content="K = 1\n"),
            Edit("params.py", search="X = 0.0", replace="X = 3.0"),
        ),
    )
    Loop.from_dir(
        toy,
        proposer=Scripted([helper]),
        tag="g",
        overrides={"editable": ["*.py"], "fixed": ["run.py"]},
    ).run()
    monkeypatch.delenv("GIT_INDEX_FILE")
    monkeypatch.delenv("GIT_DIR")
    assert git(toy, "status", "--porcelain") == ""
    assert ledger_records(toy, "g")[-1].status is Status.KEEP


def test_engine_files_and_ignored_files_do_not_block_a_run(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t", git=True)
    cfg = d / "autoresearch.toml"
    cfg.write_text(
        cfg.read_text()
        .replace('editable = ["params.py"]', 'editable = ["**/*"]')
        .replace('fixed = ["run.py"]', 'fixed = ["run.py", "autoresearch.toml"]')
    )
    (d / ".gitignore").write_text(".venv/\n")
    commit_all(d, "wide globs")
    (d / ".venv").mkdir()
    (d / ".venv" / "junk.py").write_text("x = 1\n")
    Loop.from_dir(d, proposer=Scripted([set_x(3.0)]), tag="a", sandbox=FakeSandbox()).run()
    assert (d / "results.tsv").exists()
    Loop.from_dir(d, proposer=Scripted([]), resume=True, sandbox=FakeSandbox()).run()
    Loop.from_dir(d, proposer=Scripted([]), tag="b", sandbox=FakeSandbox()).run()
    assert [r.status for r in ledger_records(d, "a")] == [Status.KEEP, Status.KEEP]
    assert git(d, "status", "--porcelain") == ""
