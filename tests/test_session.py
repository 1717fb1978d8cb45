"""Starting a session: one driver per folder, a fresh tag, committed files, a repository of
its own for a plain folder, and a research branch nobody has checked out."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import git

from autoresearch import Loop, SessionError
from autoresearch._session import DriverLock
from autoresearch.testing import FakeSandbox, make_toy_domain


def test_second_driver_is_refused(toy: Path) -> None:
    lock = DriverLock(toy / ".autoresearch" / "driver.lock")
    lock.acquire()
    try:
        with pytest.raises(SessionError, match="another autoresearch driver"):
            Loop.from_dir(toy, proposer="knob", sandbox=FakeSandbox()).run(max_experiments=1)
    finally:
        lock.release()


def test_uncommitted_changes_stop_the_run(toy: Path) -> None:
    (toy / "params.py").write_text("X = 1.0\nY = 0.0\n")
    with pytest.raises(SessionError, match=r"params\.py"):
        Loop.from_dir(toy, proposer="knob", sandbox=FakeSandbox()).run(max_experiments=1)


def test_folder_outside_git_gets_a_repository(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "plain")
    messages: list[str] = []
    Loop.from_dir(
        d, proposer="knob", sandbox=FakeSandbox(), on_event=lambda e: messages.append(e.message)
    ).run(max_experiments=1)
    assert (d / ".git").is_dir()
    assert any("created one" in m for m in messages)


def test_research_branch_checked_out_is_refused(toy: Path) -> None:
    Loop.from_dir(toy, proposer="knob", tag="c", sandbox=FakeSandbox()).run(max_experiments=1)
    git(toy, "checkout", "-q", "autoresearch/c")
    with pytest.raises(SessionError, match="checked out"):
        Loop.from_dir(toy, proposer="knob", resume=True, sandbox=FakeSandbox()).run(
            max_experiments=2
        )


def test_a_session_that_cannot_start_leaves_no_state_folder(tmp_path: Path) -> None:
    toy = make_toy_domain(tmp_path / "toy", git=True)
    (toy / "params.py").write_text("X = 1.0\nY = 0.0\n")  # uncommitted: the run refuses
    with pytest.raises(SessionError, match="uncommitted"):
        Loop.from_dir(toy).baseline()
    assert not (toy / ".autoresearch").exists()


def test_an_override_typo_is_named_as_an_override(tmp_path: Path) -> None:
    from autoresearch import ConfigError

    toy = make_toy_domain(tmp_path / "toy")
    with pytest.raises(ConfigError, match=r"time_budgt_s \(given as an override"):
        Loop.from_dir(toy, overrides={"time_budgt_s": 5})
