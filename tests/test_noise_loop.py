"""Noise-aware acceptance through the real loop: calibration, repeats, recorded means."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from autoresearch import Candidate, Edit, Loop, Status
from autoresearch._ledger import Ledger
from autoresearch.cli import app
from autoresearch.testing import Scripted, make_toy_domain


def _set(x: float, desc: str) -> Candidate:
    return Candidate(desc, (Edit("params.py", search="X = 0.0", replace=f"X = {x}"),))


def test_sequential_calibrates_repeats_and_records_means(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t", git=True, noise=0.3)
    reseed = Candidate(
        "same code, new comment",
        (Edit("params.py", search="# first coordinate", replace="# the first coordinate"),),
    )
    better = _set(3.0, "X to the optimum")  # true score 2 vs 11: far beyond the noise
    prop = Scripted([reseed, better])
    summary = Loop.from_dir(d, proposer=prop, acceptance="sequential", tag="n").run()
    led = Ledger(d / ".autoresearch" / "ledger.sqlite")
    try:
        recs = led.records("n")
        tag = led.tag_info("n")
        assert tag is not None and tag.noise_sigma is not None and tag.noise_sigma > 0
        kinds = [r.kind for r in led.runs("n")]
        assert kinds.count("calibration") >= 2 and "re-measure" in kinds
        assert [r.status for r in recs] == [Status.KEEP, Status.DISCARD, Status.KEEP]
        kept = recs[2]
        assert kept.commit is not None
        values = led.run_values("n", kept.commit)
        assert len(values) > 1
        # The recorded value is the mean of the candidate's own runs, not its best run.
        cand_values = [r.value for r in led.runs("n", kept.id) if r.commit == kept.commit]
        assert abs(kept.value - sum(cand_values) / len(cand_values)) < 1e-9
        assert kept.value != min(cand_values)
    finally:
        led.close()
    assert summary.best_value is not None and summary.best_value < 3.0
    data = json.loads(CliRunner().invoke(app, ["status", str(d), "--json"]).output)
    assert data["noise_sigma"] is not None


def test_greedy_keeps_a_lucky_reseed_that_sequential_rejects(tmp_path: Path) -> None:
    # The upstream failure mode (#466): a change that does nothing, measured once, can win.
    d = make_toy_domain(tmp_path / "t", git=True, noise=0.3)
    seeds = [
        Candidate(f"cosmetic {i}", (Edit("params.py", content=f"X = 0.0\nY = 0.0\n# {i}\n"),))
        for i in range(6)
    ]
    greedy = Loop.from_dir(d, proposer=Scripted(seeds), acceptance="greedy", tag="g").run()
    seq = Loop.from_dir(d, proposer=Scripted(seeds), acceptance="sequential", tag="s").run()
    # Each cosmetic candidate runs with a fresh seed of its own commit's first run (seed 0), so
    # greedy compares identical noise draws; sequential compares against the incumbent's mean.
    assert seq.counts["keep"] == 1  # only the baseline
    assert greedy.counts["keep"] >= 1
