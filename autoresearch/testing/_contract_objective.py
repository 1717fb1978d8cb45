"""ObjectiveContract: the Objective contract as a test suite to inherit."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from autoresearch._objective import Objective
from autoresearch._types import ExperimentKind, GateResult, Measurement, RunResult, Status
from autoresearch.testing._checks import empty_run, expect_metric_missing, finished_run, tree_state
from autoresearch.testing._fakes import make_record


class ObjectiveContract:
    """The :class:`~autoresearch.Objective` contract (see its docstring) as a test suite.

    Override :meth:`make_objective`, and describe one finished run the objective can measure:
    what it printed (``log_text``, and ``eval_text`` for a domain with an ``eval_command``)
    and the files it left (:meth:`write_run_files`). Checks: ``measure`` returns a
    Measurement with a finite primary value, changes no file, and gives the same reading of
    the same run every time (also from a fresh instance); a run with no output and no files
    raises MetricMissing; ``gate`` returns a GateResult; ``report`` returns named numbers.
    """

    #: What the finished run's command printed.
    log_text: str = ""
    #: What its ``eval_command`` printed (None: the domain has none).
    eval_text: str | None = None

    def make_objective(self) -> Objective:
        """Build the objective under test."""
        raise NotImplementedError("override make_objective() in your test class")

    def write_run_files(self, workdir: Path) -> None:
        """Write the files the finished run left in its folder (e.g. ``metrics.json``)."""

    # -- the checks ----------------------------------------------------------------------
    def test_measure_returns_a_finite_measurement(self, tmp_path: Path) -> None:
        m = self.make_objective().measure(self._run(tmp_path))
        assert isinstance(m, Measurement), f"measure() returned {type(m).__name__}"
        assert math.isfinite(m.primary), f"primary value {m.primary} is not finite"
        for name, group in (("secondary", m.secondary), ("holdout", m.holdout)):
            _assert_figures(group, f"Measurement.{name}")

    def test_measure_changes_no_file(self, tmp_path: Path) -> None:
        run = self._run(tmp_path)
        before = tree_state(tmp_path)
        self.make_objective().measure(run)
        assert tree_state(tmp_path) == before, (
            "measure() changed the run's files or logs; it must only read them"
        )

    def test_measure_reads_the_run_alone(self, tmp_path: Path) -> None:
        run = self._run(tmp_path)
        objective = self.make_objective()
        first = objective.measure(run)
        again = objective.measure(run)
        fresh = self.make_objective().measure(run)
        # Runs of a candidate may be measured out of order or after a resume (not guaranteed
        # to be seen in order), so a reading may depend on nothing but the run.
        assert first == again == fresh, (
            f"the same run measured {first}, then {again}, then {fresh} (fresh instance)"
        )

    def test_a_run_without_output_is_metric_missing(self, tmp_path: Path) -> None:
        expect_metric_missing(
            self.make_objective(), empty_run(tmp_path, self.eval_text is not None)
        )

    def test_gate_returns_a_gate_result(self, tmp_path: Path) -> None:
        gate = self.make_objective().gate(self._run(tmp_path))
        assert isinstance(gate, GateResult), f"gate() returned {type(gate).__name__}"
        assert isinstance(gate.reason, str)

    def test_report_returns_named_figures(self, tmp_path: Path) -> None:
        objective = self.make_objective()
        m = objective.measure(self._run(tmp_path))
        rows = [
            make_record(id=1, status=Status.KEEP, value=m.primary, proposer="baseline",
                        kind=ExperimentKind.BASELINE, description="baseline"),
            make_record(id=2, status=Status.DISCARD, value=m.primary, secondary=m.secondary,
                        holdout=m.holdout),
            make_record(id=3, status=Status.CRASH, value=None, reason="exit code 1"),
        ]  # fmt: skip
        for history in ([], rows):
            _assert_figures(objective.report(history), "report()")

    # -- helpers -------------------------------------------------------------------------
    def _run(self, tmp_path: Path) -> RunResult:
        workdir = tmp_path / "work"
        workdir.mkdir(parents=True, exist_ok=True)
        self.write_run_files(workdir)
        logs = tmp_path / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return finished_run(logs, workdir, self.log_text, self.eval_text)


def _assert_figures(figures: object, what: str) -> None:
    assert isinstance(figures, Mapping), f"{what} is a {type(figures).__name__}, not a mapping"
    for k, v in figures.items():
        assert isinstance(k, str), f"{what}: key {k!r} is not a string"
        assert isinstance(v, (int, float)) and not isinstance(v, bool), (
            f"{what}: {k} = {v!r} is not a number"
        )


__all__ = ["ObjectiveContract"]
