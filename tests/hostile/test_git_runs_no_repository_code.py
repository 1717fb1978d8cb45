"""A candidate that plants programs in the repository's git (hooks, fsmonitor, an external
diff, textconv and filter drivers) gets none of them run by the engine's git calls. The
control runs plain git on the same repository and shows each plant really fires. The runs are
unisolated on purpose: in namespaces the candidate cannot reach the repository at all."""

from __future__ import annotations

import subprocess
from pathlib import Path

from autoresearch import Candidate, Edit, Loop
from autoresearch.execution import LocalSandbox
from autoresearch.proposers import Scripted
from autoresearch.testing import make_toy_domain

PLANT = """\
import os, pathlib, subprocess
common = subprocess.run(
    ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
    capture_output=True, text=True,
).stdout.strip()
if common:
    git = pathlib.Path(common)
    mark = {mark!r}
    for hook in ("post-checkout", "pre-commit", "commit-msg", "post-commit",
                 "reference-transaction", "post-index-change"):
        h = git / "hooks" / hook
        h.parent.mkdir(exist_ok=True)
        h.write_text(f"#!/bin/sh\\ntouch {{mark}}-{{hook}}\\n")
        h.chmod(0o755)
    def cfg(key, value):
        subprocess.run(["git", "config", "--file", str(git / "config"), key, value])
    cfg("core.fsmonitor", f"touch {{mark}}-fsmonitor; false")
    cfg("diff.external", f"sh -c 'touch {{mark}}-external'")
    cfg("diff.evil.textconv", f"sh -c 'touch {{mark}}-textconv; cat'")
    cfg("filter.evil.clean", f"sh -c 'touch {{mark}}-clean; cat'")
    cfg("filter.evil.smudge", f"sh -c 'touch {{mark}}-smudge; cat'")
    cfg("core.pager", f"sh -c 'touch {{mark}}-pager; cat'")
    (git / "info").mkdir(exist_ok=True)
    (git / "info" / "attributes").write_text("* filter=evil diff=evil\\n")
X = 0.5
Y = 0.0
"""


def _marks(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.glob("pwned*"))


def test_planted_git_programs_never_run_in_the_driver(tmp_path: Path) -> None:
    toy = make_toy_domain(tmp_path / "toy")
    mark = str(tmp_path / "pwned")
    plant = Candidate("plant git programs", (Edit("params.py", content=PLANT.format(mark=mark)),))
    later = [
        Candidate(f"X to {x}", (Edit("params.py", content=f"X = {x}\nY = 1.0\n"),))
        for x in (2.0, 3.0)
    ]
    # Without isolation (a candidate in namespaces sees no .git at all, tests/hostile/
    # test_namespaces.py): the git hardening holds by itself.
    summary = Loop.from_dir(
        toy, proposer=Scripted([plant, *later]), tag="t", sandbox=LocalSandbox("none")
    ).run()
    assert summary.experiments == 4
    # The plant ran (its run recorded a value), the engine went on committing, diffing and
    # checking out worktrees, and not one planted program ran.
    assert summary.counts["keep"] >= 2
    assert _marks(tmp_path) == []
    # Control: the same repository, driven by plain git, runs the plants.
    repo = toy
    subprocess.run(["git", "status"], cwd=repo, capture_output=True)
    (repo / "params.py").write_text("X = 9.0\n")
    subprocess.run(["git", "diff"], cwd=repo, capture_output=True)
    subprocess.run(["git", "add", "params.py"], cwd=repo, capture_output=True)
    fired = _marks(tmp_path)
    assert "pwned-fsmonitor" in fired and "pwned-clean" in fired
    assert any(m in fired for m in ("pwned-external", "pwned-textconv"))
