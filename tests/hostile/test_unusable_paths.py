"""An edit whose path the file system refuses (a 300-character name, control characters, a
NUL byte, a lone surrogate) makes the experiment invalid, and text the ledger cannot store (a
lone surrogate in a description) is stored escaped; the driver never crashes on either."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoresearch import Candidate, Edit, Ledger, Loop, Status
from autoresearch.proposers import Scripted
from autoresearch.testing import make_toy_domain

BAD_PATHS = [
    "x" * 300 + ".py",
    "a\nb.py",
    "tab\there.py",
    "nul\0.py",
    "d/" + "y" * 256 + ".py",
    "extra/\udcff.py",  # a lone surrogate: no file system name, no git path
]


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


def test_a_lone_surrogate_in_the_description_or_content_never_crashes_the_driver(
    tmp_path: Path,
) -> None:
    toy = make_toy_domain(tmp_path / "toy")
    odd = Candidate(
        "tune X \ud800", (Edit("params.py", content="X = 3.0\nY = 0.0\n"),), hypothesis="\udcff"
    )
    bad_text = Candidate("odd bytes", (Edit("params.py", content="X = 2.0\n# \ud800\n"),))
    summary = Loop.from_dir(toy, proposer=Scripted([odd, bad_text]), tag="t").run()
    assert summary.experiments == 3 and summary.counts["invalid"] == 1
    history = Ledger(toy / ".autoresearch" / "ledger.sqlite").history("t")
    assert history[1].description == "tune X \\ud800" and history[1].status is Status.KEEP
    assert "not valid text" in history[2].reason
