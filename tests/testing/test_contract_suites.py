"""The contract suites catch plug-ins that break their contract: each broken plug-in below
fails the check named for what it breaks (the built-ins pass them in their own test files)."""

from __future__ import annotations

import itertools
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from autoresearch import (
    Acceptance,
    Candidate,
    Context,
    Decision,
    Edit,
    Evidence,
    ExperimentRecord,
    LocalSandbox,
    Measurement,
    MetricMissing,
    Objective,
    Proposer,
    RunResult,
    RunSpec,
    Verdict,
)
from autoresearch.testing import (
    AcceptanceContract,
    FakeObjective,
    ObjectiveContract,
    ProposerContract,
    SandboxContract,
    Scripted,
)

X_TO_3 = Candidate("X to 3", (Edit("params.py", search="X = 0.0", replace="X = 3.0"),))


# -- proposers -----------------------------------------------------------------------------------


class WritesWhenBuilt(Scripted):
    def __init__(self, domain_dir: Path) -> None:
        super().__init__([X_TO_3])
        (domain_dir / ".autoresearch").mkdir()
        (domain_dir / ".autoresearch" / "study.db").write_text("made too early")


class EditsTheHarness(Proposer):
    def propose(self, context: Context) -> Candidate:
        return Candidate("a better score", (Edit("run.py", content="print('score: 0')\n"),))


class AppliesItsOwnEdit(Proposer):
    def __init__(self, domain_dir: Path) -> None:
        self.domain_dir = domain_dir

    def propose(self, context: Context) -> Candidate:
        (self.domain_dir / "params.py").write_text("X = 3.0\nY = 0.0\n")
        return X_TO_3


class ReturnsText(Proposer):
    def propose(self, context: Context) -> Candidate:
        return "X = 3"  # type: ignore[return-value]


class BrokenProposers(ProposerContract):
    def __init__(self, build: type) -> None:  # built by hand here, never collected
        self.build = build

    def make_proposer(self, domain_dir: Path) -> Proposer:
        try:
            return self.build(domain_dir)  # type: ignore[no-any-return]
        except TypeError:
            return self.build()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("proposer", "check", "says"),
    [
        (WritesWhenBuilt, "test_building_and_check_budget_create_nothing", "files belong in"),
        (EditsTheHarness, "test_one_run_in_the_documented_order", "does not apply"),
        (AppliesItsOwnEdit, "test_one_run_in_the_documented_order", "changed files"),
        (ReturnsText, "test_one_run_in_the_documented_order", "not a Candidate"),
        (ReturnsText, "test_a_resumed_proposer_goes_on_from_the_records", "not a Candidate"),
    ],
)
def test_proposer_contract_fails_a_broken_proposer(
    tmp_path: Path, proposer: type, check: str, says: str
) -> None:
    with pytest.raises(AssertionError, match=says):
        getattr(BrokenProposers(proposer), check)(tmp_path)


# -- objectives ----------------------------------------------------------------------------------


class WritesACache(FakeObjective):
    def measure(self, run: RunResult) -> Measurement:
        (run.workdir / "cache.json").write_text("{}")
        return super().measure(run)


class KeyErrorWhenEmpty(FakeObjective):
    def measure(self, run: RunResult) -> Measurement:
        if not run.log_text():
            raise KeyError("score")
        return super().measure(run)


class CountsRuns(Objective):
    """Its value depends on how many runs it saw before: readings out of order go wrong."""

    def __init__(self) -> None:
        self.seen = 0

    def measure(self, run: RunResult) -> Measurement:
        if not run.log_text():
            raise MetricMissing("empty")
        self.seen += 1
        return Measurement(float(self.seen))


class ReportsText(FakeObjective):
    def report(self, history: Sequence[ExperimentRecord]) -> Mapping[str, float]:
        return {"deflated_sharpe": "high"}  # type: ignore[dict-item]


class BrokenObjectives(ObjectiveContract):
    log_text = "---\nscore: 1.5\n"

    def __init__(self, build: type) -> None:
        self.build = build

    def make_objective(self) -> Objective:
        return self.build()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("objective", "check", "says"),
    [
        (WritesACache, "test_measure_changes_no_file", "must only read"),
        (KeyErrorWhenEmpty, "test_a_run_without_output_is_metric_missing", "MetricMissing"),
        (CountsRuns, "test_measure_reads_the_run_alone", "the same run measured"),
        (ReportsText, "test_report_returns_named_figures", "not a number"),
    ],
)
def test_objective_contract_fails_a_broken_objective(
    tmp_path: Path, objective: type, check: str, says: str
) -> None:
    with pytest.raises(AssertionError, match=says):
        getattr(BrokenObjectives(objective), check)(tmp_path)


# -- sandboxes -----------------------------------------------------------------------------------


class RaisesOnFailure(LocalSandbox):
    def run(self, spec: RunSpec) -> RunResult:
        r = super().run(spec)
        if r.exit_code:
            raise subprocess.CalledProcessError(r.exit_code, spec.command)
        return r


class StickyCancel(LocalSandbox):
    """Never clears a cancel: every later run is interrupted too."""

    def run(self, spec: RunSpec) -> RunResult:
        sticky = self._cancel.is_set()
        r = super().run(spec)
        if sticky:
            self._cancel.set()
        return r


class EvalAfterAFailure(LocalSandbox):
    def run(self, spec: RunSpec) -> RunResult:
        r = super().run(spec)
        if spec.eval_log_path is not None:
            spec.eval_log_path.write_text("evaluated anyway\n")
        return r


class BrokenSandboxes(SandboxContract):
    def __init__(self, build: type) -> None:
        self.build = build

    def make_sandbox(self) -> LocalSandbox:
        return self.build()  # type: ignore[no-any-return]


def test_sandbox_contract_fails_a_broken_sandbox(tmp_path: Path) -> None:
    with pytest.raises(subprocess.CalledProcessError):
        BrokenSandboxes(RaisesOnFailure).test_a_failing_command_is_a_crash_not_an_exception(
            tmp_path / "a"
        )
    with pytest.raises(AssertionError, match="reached a later run"):
        BrokenSandboxes(StickyCancel).test_a_cancel_before_a_run_ends_only_the_next_one(
            tmp_path / "b"
        )
    with pytest.raises(AssertionError, match="eval command ran after"):
        BrokenSandboxes(EvalAfterAFailure).test_no_eval_after_a_failed_command(tmp_path / "c")


# -- acceptance policies ---------------------------------------------------------------------------


class Moody(Acceptance):
    """Keeps every other candidate: it holds state."""

    name = "moody"
    _calls = itertools.count()

    def decide(self, evidence: Evidence) -> Decision:
        verdict = Verdict.KEEP if next(self._calls) % 2 else Verdict.DISCARD
        return Decision(verdict, "mood")


class BiggerIsBetter(Acceptance):
    """Ignores the direction."""

    name = "bigger"

    def decide(self, evidence: Evidence) -> Decision:
        better = max(evidence.candidate) > max(evidence.incumbent)
        return Decision(Verdict.KEEP if better else Verdict.DISCARD, "bigger")


class NeverKeeps(Acceptance):
    name = "never"

    def decide(self, evidence: Evidence) -> Decision:
        return Decision(Verdict.DISCARD, "no")


class AlwaysHungry(Acceptance):
    """Asks for incumbent runs forever: the loop would never end."""

    name = "hungry"
    max_runs_per_candidate = 5

    def decide(self, evidence: Evidence) -> Decision:
        return Decision(Verdict.MEASURE, "more", more_incumbent=1)


class BrokenPolicies(AcceptanceContract):
    def __init__(self, build: type) -> None:
        self.build = build

    def make_acceptance(self) -> Acceptance:
        return self.build()  # type: ignore[no-any-return]


def test_acceptance_contract_fails_a_broken_policy() -> None:
    with pytest.raises(AssertionError, match="policies hold no state"):
        BrokenPolicies(Moody).test_the_policy_is_pure()
    with pytest.raises(AssertionError, match="negated and minimized"):
        BrokenPolicies(BiggerIsBetter).test_directions_are_symmetric()
    with pytest.raises(AssertionError, match="kept"):
        BrokenPolicies(BiggerIsBetter).test_a_clearly_worse_candidate_is_never_kept()
    with pytest.raises(AssertionError, match="better"):
        BrokenPolicies(NeverKeeps).test_a_clearly_better_candidate_is_kept()
    with pytest.raises(AssertionError, match="no decision after"):
        BrokenPolicies(AlwaysHungry).test_a_clearly_better_candidate_is_kept()
