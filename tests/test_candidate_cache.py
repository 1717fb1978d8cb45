"""The candidates' AUTORESEARCH_CACHE_DIR starts empty for every run (no state carried from
one run into the next: trained weights, a result), unless shared_candidate_cache is set."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoresearch import Candidate, Edit, Loop, Status
from autoresearch.testing import Scripted, make_toy_domain

# Each run leaves a mark in its cache and reports how many marks it found: with a cache
# that outlives runs the score falls run after run, with no change to the code.
RUN = """\
import os
from pathlib import Path

import params

cache = Path(os.environ["AUTORESEARCH_CACHE_DIR"])
cache.mkdir(parents=True, exist_ok=True)
seen = len(list(cache.glob("mark-*")))
(cache / f"mark-{os.getpid()}-{seen}").write_text("x")
print("---")
print(f"score: {(params.X - 3) ** 2 + 1 - seen}")
"""


def _toy(tmp_path: Path, shared: bool) -> Path:
    d = make_toy_domain(tmp_path / "toy", git=False)
    (d / "run.py").write_text(RUN)
    toml = (d / "autoresearch.toml").read_text()
    line = f"shared_candidate_cache = {'true' if shared else 'false'}\n"
    (d / "autoresearch.toml").write_text(line + toml)
    return d


@pytest.mark.parametrize("shared", [False, True])
def test_a_run_finds_no_mark_of_an_earlier_run(tmp_path: Path, shared: bool) -> None:
    d = _toy(tmp_path, shared)
    comment = Candidate("a comment", (Edit("params.py", search="Y = 0.0", replace="Y = 0.0  # y"),))
    summary = Loop.from_dir(d, proposer=Scripted([comment]), tag="c", acceptance="greedy").run(
        max_experiments=2
    )
    baseline = summary.baseline_value
    assert baseline is not None
    if shared:
        # The comment's run found the baseline's mark: a "gain" from state alone.
        assert summary.best_value == pytest.approx(baseline - 1)
        assert summary.counts.get(Status.KEEP, 0) == 2
    else:
        assert summary.best_value == pytest.approx(baseline)
        assert summary.counts.get(Status.KEEP, 0) == 1
