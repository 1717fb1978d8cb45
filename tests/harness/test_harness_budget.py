"""The budget start signal (AUTORESEARCH_BUDGET_FILE) and the Budget helper."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from autoresearch import harness
from autoresearch.harness import _budget


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTORESEARCH_BUDGET_FILE", raising=False)
    monkeypatch.delenv("AUTORESEARCH_ISOLATED_CALL", raising=False)
    monkeypatch.setattr(_budget, "_warned", set())


def test_the_signal_creates_the_file_holding_the_time(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = tmp_path / "budget_started"
    monkeypatch.setenv("AUTORESEARCH_BUDGET_FILE", str(target))
    before = time.time()
    harness.budget_started()
    stamp = float(target.read_text())
    assert before <= stamp <= time.time()
    assert os.listdir(tmp_path) == ["budget_started"]  # no temporary file left behind
    harness.budget_started()  # later calls change nothing: the first start counts
    assert float(target.read_text()) == stamp


def test_without_the_variable_nothing_is_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    harness.budget_started()
    monkeypatch.setenv("AUTORESEARCH_BUDGET_FILE", "")
    harness.budget_started()
    assert os.listdir(tmp_path) == []


def test_an_unwritable_path_warns_once_and_never_raises(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no_such_dir" / "budget_started"
    monkeypatch.setenv("AUTORESEARCH_BUDGET_FILE", str(missing))
    harness.budget_started()
    harness.start_budget(10.0)
    err = capsys.readouterr().err
    assert err.count("warning: could not signal the budget start") == 1
    assert str(missing) in err
    assert not missing.exists()


def test_start_budget_signals_and_reads_the_engine_budget(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AUTORESEARCH_BUDGET_FILE", str(tmp_path / "started"))
    monkeypatch.setenv("AUTORESEARCH_TIME_BUDGET_S", "30")
    budget = harness.start_budget()
    assert (tmp_path / "started").exists()
    assert budget.budget_s == 30.0


def test_budget_arithmetic_follows_the_monotonic_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    budget = harness.Budget(20.0)
    assert (budget.elapsed_s, budget.remaining_s, budget.fraction, budget.done) == (
        0.0,
        20.0,
        0.0,
        False,
    )
    now[0] = 105.0
    assert (budget.elapsed_s, budget.remaining_s, budget.fraction) == (5.0, 15.0, 0.25)
    now[0] = 125.0
    assert (budget.remaining_s, budget.fraction, budget.done) == (0.0, 1.0, True)
    with pytest.raises(ValueError, match="positive"):
        harness.Budget(0.0)


def test_budgeted_work_inside_an_isolated_call_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AUTORESEARCH_BUDGET_FILE", str(tmp_path / "started"))
    monkeypatch.setenv("AUTORESEARCH_ISOLATED_CALL", "1")
    with pytest.raises(RuntimeError, match='__name__ == "__main__"'):
        harness.start_budget(5.0)
    with pytest.raises(RuntimeError, match="isolated"):
        harness.budget_started()
    assert not (tmp_path / "started").exists()
