"""An edit whose path the file system refuses (a 300-character name, control characters, a
NUL byte) makes the experiment invalid; the driver never crashes on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoresearch import Candidate, Edit, Loop, Status
from autoresearch.proposers import Scripted
from autoresearch.testing import make_toy_domain

BAD_PATHS = ["x" * 300 + ".py", "a\nb.py", "tab\there.py", "nul\0.py", "d/" + "y" * 256 + ".py"]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_an_unusable_path_is_invalid_and_the_loop_goes_on(tmp_path: Path, path: str) -> None:
    toy = make_toy_domain(tmp_path / "toy")
    bad = Candidate("a hostile file name", (Edit(path, content="X = 1\n"),))
    good = Candidate("X to 3", (Edit("params.py", content="X = 3.0\nY = 0.0\n"),))
    summary = Loop.from_dir(
        toy, proposer=Scripted([bad, good]), tag="t", overrides={"editable": ["**/*.py"]}
    ).run()
    statuses = [s for s, n in summary.counts.items() for _ in range(n)]
    assert summary.experiments == 3 and summary.counts["invalid"] == 1
    assert summary.counts["keep"] == 2, statuses
    assert Status.INVALID.value in statuses
