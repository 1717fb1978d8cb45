"""`status` figures that agree with the decisions (issue 16, item 7): the noise estimate the
acceptance policy is handed and the runs it rests on, every baseline figure labelled
"first run" or "mean of N"."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest
from conftest import open_ledger, set_x
from typer.testing import CliRunner

from autoresearch import Acceptance, AcceptanceConfig, Decision, Evidence, Loop, Verdict
from autoresearch.cli import app
from autoresearch.report import figures_text
from autoresearch.testing import FakeSandbox, Scripted, make_toy_domain, toy_run

NOISE = 0.3


def _status(domain: Path) -> dict[str, Any]:
    res = CliRunner().invoke(app, ["status", str(domain), "--json"])
    assert res.exit_code == 0, res.output
    data: dict[str, Any] = json.loads(res.output)
    return data


def _pooled(domain: Path, tag: str) -> tuple[float, int, int]:
    """The per-run noise as the engine hands it to the policy, recomputed by hand: the
    within-commit variance pooled over every commit measured at least twice."""
    with open_ledger(domain) as led:
        groups = [v for v in led.values_by_commit(tag).values() if len(v) >= 2]
    dof = sum(len(v) - 1 for v in groups)
    sigma = (sum(statistics.variance(v) * (len(v) - 1) for v in groups) / dof) ** 0.5
    return sigma, sum(len(v) for v in groups), len(groups)


class _Twice(Acceptance):
    """Measures each candidate twice and keeps it, noting the sigma it was handed; it asks
    for no calibration, so the ledger's calibrated sigma stays unset."""

    max_runs_per_candidate = 2

    def __init__(self) -> None:
        super().__init__(AcceptanceConfig())
        self.handed: list[float | None] = []

    def decide(self, evidence: Evidence) -> Decision:
        if len(evidence.candidate) < 2:
            return Decision(Verdict.MEASURE, "once more", more_candidate=1)
        self.handed.append(evidence.noise_sigma)
        return Decision(Verdict.KEEP, "measured twice")


def test_status_shows_the_sigma_the_policy_was_handed_and_its_runs(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t", git=True, noise=NOISE)
    policy = _Twice()
    sandbox = FakeSandbox(toy_run)
    Loop.from_dir(d, proposer=Scripted([set_x(2.0)]), acceptance=policy, sandbox=sandbox).run()
    data = _status(d)
    with open_ledger(d) as led:
        info = led.tag_info(data["tag"])
    assert info is not None and info.noise_sigma is None  # nothing calibrated: status said "-"
    assert len(policy.handed) == 1 and policy.handed[0] is not None
    used = policy.handed[0]
    assert data["noise_sigma"] == pytest.approx(used)
    assert (data["noise_runs"], data["noise_commits"]) == (2, 1)
    assert f"noise σ {used:.3g} from 2 runs of 1 commit" in figures_text(data)


def test_sequential_status_labels_the_baseline_and_pools_the_repeats(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t", git=True, noise=NOISE)
    Loop.from_dir(
        d,
        proposer=Scripted([set_x(2.5, desc="X near the optimum")]),
        acceptance="sequential",
        sandbox=FakeSandbox(toy_run),
        tag="n",
    ).run()
    data = _status(d)
    with open_ledger(d) as led:
        runs = led.runs("n")
        stored = led.tag_info("n")
    base_commit = runs[0].commit
    base_values = [r.value for r in runs if r.commit == base_commit and r.value is not None]
    assert [r.kind for r in runs].count("calibration") >= 2 and len(base_values) > 2
    # The noise: every commit measured more than once, not the calibration's figure alone.
    sigma, n_runs, n_commits = _pooled(d, "n")
    assert stored is not None and stored.noise_sigma != pytest.approx(sigma)
    assert data["noise_sigma"] == pytest.approx(sigma)
    assert (data["noise_runs"], data["noise_commits"]) == (n_runs, n_commits) == (len(runs), 2)
    # The baseline: the summary is the mean of all its runs, its row the first run.
    assert data["baseline_value"] == pytest.approx(statistics.fmean(base_values))
    assert data["baseline_runs"] == len(base_values)
    assert data["baseline_label"] == f"mean of {len(base_values)}"
    row = data["recent"][0]
    assert row["value"] == base_values[0] and row["value_label"] == "first run"
    kept = data["recent"][1]
    assert kept["status"] == "keep" and kept["value_label"].startswith("mean of ")
    assert data["best_label"] == f"mean of {data['best_runs']}"
    text = figures_text(data)
    assert f"baseline {data['baseline_value']:.6g} (mean of {len(base_values)}) → best" in text
    assert f"noise σ {sigma:.3g} from {len(runs)} runs of 2 commits" in text


def test_a_single_run_baseline_is_labelled_first_run(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t", git=True)
    Loop.from_dir(d, proposer=Scripted([set_x(9.0)]), sandbox=FakeSandbox(toy_run)).run()
    data = _status(d)
    assert (data["baseline_value"], data["baseline_runs"]) == (11.0, 1)
    assert data["baseline_label"] == "first run" and data["recent"][0]["value_label"] == "first run"
    assert data["noise_sigma"] is None and data["noise_runs"] == 0
    assert "baseline 11 (first run)" in figures_text(data)
    assert "noise σ - (no commit measured twice yet)" in figures_text(data)
