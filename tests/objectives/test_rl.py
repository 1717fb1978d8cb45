"""objectives.rl: accuracy from the fixed evaluator's block, its standard error, n, holdout."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from autoresearch import MetricMissing, RunResult
from autoresearch.objectives.rl import Accuracy, binomial_se
from autoresearch.testing import check_objective


def run_with(
    tmp_path: Path, eval_text: str | None, command_text: str = "", metrics: object = None
) -> RunResult:
    log = tmp_path / "run.log"
    log.write_text(command_text)
    eval_log = None
    if eval_text is not None:
        eval_log = tmp_path / "eval.log"
        eval_log.write_text(eval_text)
    if metrics is not None:
        (tmp_path / "rl_metrics.json").write_text(json.dumps(metrics))
    return RunResult(
        workdir=tmp_path,
        log_path=log,
        exit_code=0,
        wall_s=1.0,
        peak_memory_mb=1.0,
        seed=0,
        eval_log_path=eval_log,
        eval_exit_code=0 if eval_log else None,
    )


BLOCK = "---\naccuracy: 0.250000\nn: 200\naccuracy_strict: 0.100000\n"


def test_accuracy_se_and_n_are_recorded(tmp_path: Path) -> None:
    m = Accuracy().measure(run_with(tmp_path, BLOCK))
    assert m.primary == 0.25
    assert m.secondary["n"] == 200
    assert m.secondary["accuracy_se"] == pytest.approx(math.sqrt(0.25 * 0.75 / 200))
    assert m.secondary["accuracy_strict"] == pytest.approx(0.1)
    assert m.holdout == {}


def test_a_forged_line_of_the_training_command_is_ignored(tmp_path: Path) -> None:
    forged = "---\naccuracy: 1.000000\nn: 100000\n"
    m = Accuracy().measure(run_with(tmp_path, BLOCK, command_text=forged))
    assert m.primary == 0.25 and m.secondary["n"] == 200
    # Without an evaluator nothing is trusted.
    with pytest.raises(MetricMissing, match="fixed evaluator"):
        Accuracy().measure(run_with(tmp_path, None, command_text=forged))


@pytest.mark.parametrize(
    "block, match",
    [
        ("---\nn: 10\n", "no 'accuracy:'"),
        ("---\naccuracy: 0.5\n", "no 'n:'"),
        ("---\naccuracy: 1.5\nn: 10\n", "not a fraction"),
        ("---\naccuracy: -0.1\nn: 10\n", "not a fraction"),
        ("---\naccuracy: nan\nn: 10\n", "not a fraction"),
        ("---\naccuracy: 0.5\nn: 0\n", "not a count"),
        ("---\naccuracy: 0.5\nn: 2.5\n", "not a count"),
    ],
)
def test_impossible_figures_are_missing_metrics(tmp_path: Path, block: str, match: str) -> None:
    with pytest.raises(MetricMissing, match=match):
        Accuracy().measure(run_with(tmp_path, block))


def test_holdout_comes_from_the_metrics_file_checked_against_the_print(tmp_path: Path) -> None:
    metrics = {
        "selection": {"accuracy": 0.25, "n": 200},
        "holdout": {"accuracy": 0.3, "n": 100, "accuracy_strict": 0.2},
    }
    m = Accuracy(metrics_file="rl_metrics.json").measure(run_with(tmp_path, BLOCK, metrics=metrics))
    assert m.primary == 0.25
    assert m.holdout["holdout_accuracy"] == pytest.approx(0.3)
    assert m.holdout["holdout_n"] == 100
    assert m.holdout["holdout_accuracy_se"] == pytest.approx(binomial_se(0.3, 100))
    assert m.holdout["holdout_accuracy_strict"] == pytest.approx(0.2)
    assert not any(k.startswith("holdout") for k in m.secondary)


def test_a_metrics_file_that_disagrees_with_the_print_is_refused(tmp_path: Path) -> None:
    metrics = {"selection": {"accuracy": 0.9, "n": 200}, "holdout": {"accuracy": 0.9, "n": 100}}
    with pytest.raises(MetricMissing, match="not written by this evaluation"):
        Accuracy(metrics_file="rl_metrics.json").measure(run_with(tmp_path, BLOCK, metrics=metrics))
    with pytest.raises(MetricMissing, match="wrote no"):
        Accuracy(metrics_file="rl_metrics.json").measure(run_with(tmp_path / "..", BLOCK))


def test_binomial_se() -> None:
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    assert binomial_se(0.0, 10) == 0.0
    assert binomial_se(0.5, 0) == math.inf


def test_the_contract_suite(tmp_path: Path) -> None:
    m = check_objective(Accuracy(), tmp_path, log_text="train", eval_text=BLOCK)
    assert m.primary == 0.25
