"""SharpeObjective: measure, gates and the deflated Sharpe ratio, on JSON written by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from autoresearch import ExperimentRecord, MetricMissing, RunResult, Status
from autoresearch._registry import load_module_file
from autoresearch.testing import ObjectiveContract, check_objective, make_record

# The objective is a fixed file of its domain, loaded the way the engine loads it.
_OBJECTIVE = load_module_file(
    Path(__file__).parents[2] / "domains" / "trading_sharpe" / "objective.py", "objective"
)
SharpeObjective = _OBJECTIVE.SharpeObjective
deflated_sharpe = _OBJECTIVE.deflated_sharpe
expected_max_sharpe = _OBJECTIVE.expected_max_sharpe

FIG = {"sharpe": 1.2, "max_drawdown": 0.1, "turnover": 5.0, "trades": 40.0, "cagr": 0.08}


def _report(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "insample": {**FIG, "sharpe": 2.0},
        "validation": {
            **FIG,
            "n_obs": 1000.0,
            "skew": -0.2,
            "kurtosis": 4.0,
            "sharpe_min_window": 0.3,
        },
        "holdout": {**FIG, "sharpe": -0.7, "n_obs": 500.0, "skew": 0.0, "kurtosis": 3.0},
        "gates": {"lookahead_ok": True, "lookahead_detail": "", "nan_positions": 0, "trades": 40.0},
    }
    for key, value in over.items():
        data[key] = {**data[key], **value}
    return data


def _summary(data: dict[str, Any]) -> str:
    """The `---` summary the harness prints alongside the JSON it writes."""
    ok = int(data.get("gates", {}).get("lookahead_ok") is True)
    sharpe = data.get("validation", {}).get("sharpe", math.nan)
    return f"---\nval_sharpe: {sharpe:.6f}\nlookahead_ok: {ok}\n"


def _run(tmp_path: Path, data: dict[str, Any] | None, printed: str | None = None) -> RunResult:
    if data is not None:
        (tmp_path / "trading_metrics.json").write_text(json.dumps(data))
    log = tmp_path / "run.log"
    log.write_text(printed if printed is not None else _summary(data or {}))
    return RunResult(tmp_path, log, 0, 1.0, 10.0, 0)


def test_measure_splits_validation_insample_and_holdout(tmp_path: Path) -> None:
    (tmp_path / "trading_metrics.json").write_text(json.dumps(_report()))
    m = check_objective(
        SharpeObjective(turnover_penalty=0.02, drawdown_penalty=1.0),
        tmp_path,
        eval_text=_summary(_report()),
    )
    assert m.primary == 1.2
    assert m.secondary["insample_sharpe"] == 2.0
    assert m.secondary["kurtosis"] == 4.0
    assert m.secondary["penalized"] == pytest.approx(1.2 - 0.02 * 5.0 - 1.0 * 0.1)
    assert m.holdout["holdout_sharpe"] == -0.7
    # Holdout figures never leak into what decides or what a proposer may be shown.
    assert not any(k.startswith("holdout") for k in m.secondary)


def test_penalized_primary(tmp_path: Path) -> None:
    obj = SharpeObjective(primary="penalized", turnover_penalty=0.1, drawdown_penalty=2.0)
    m = obj.measure(_run(tmp_path, _report()))
    assert m.primary == pytest.approx(1.2 - 0.5 - 0.2)


def test_missing_or_broken_json_is_metric_missing(tmp_path: Path) -> None:
    with pytest.raises(MetricMissing, match=r"wrote no trading_metrics\.json"):
        SharpeObjective().measure(_run(tmp_path, None))
    (tmp_path / "trading_metrics.json").write_text("{not json")
    with pytest.raises(MetricMissing, match="not valid JSON"):
        SharpeObjective().measure(_run(tmp_path, None))
    with pytest.raises(MetricMissing, match="validation sharpe"):
        SharpeObjective().measure(_run(tmp_path, {"validation": {"trades": 3}}))


def test_a_json_that_disagrees_with_the_eval_output_is_rejected(tmp_path: Path) -> None:
    # A rewritten trading_metrics.json: the harness printed other figures than the file holds.
    forged = _report(validation={"sharpe": 9.9})
    with pytest.raises(MetricMissing, match="altered"):
        SharpeObjective().measure(_run(tmp_path, forged, printed=_summary(_report())))
    with pytest.raises(MetricMissing, match="no 'val_sharpe:' line"):
        SharpeObjective().measure(_run(tmp_path, _report(), printed=""))
    # Child output is prefixed by the harness, so it cannot pose as the summary line.
    printed = "strategy| val_sharpe: 9.900000\n" + _summary(_report())
    with pytest.raises(MetricMissing, match="altered"):
        SharpeObjective().measure(_run(tmp_path, forged, printed=printed))
    passed = _report()
    failed = _summary(passed).replace("lookahead_ok: 1", "lookahead_ok: 0")
    assert not SharpeObjective().gate(_run(tmp_path, passed, printed=failed)).passed


@pytest.mark.parametrize(
    ("gates", "reason"),
    [
        ({"lookahead_ok": False, "lookahead_detail": "positions changed"}, "look-ahead"),
        ({"nan_positions": 12}, "NaN"),
        ({"trades": 3.0}, "min_trades=10"),
    ],
)
def test_gate_fails(tmp_path: Path, gates: dict[str, Any], reason: str) -> None:
    result = SharpeObjective(min_trades=10).gate(_run(tmp_path, _report(gates=gates)))
    assert not result.passed
    assert reason in result.reason


def test_gate_passes_a_clean_strategy(tmp_path: Path) -> None:
    assert SharpeObjective(min_trades=10).gate(_run(tmp_path, _report())).passed


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="primary"):
        SharpeObjective(primary="sortino")
    with pytest.raises(ValueError, match=">= 0"):
        SharpeObjective(turnover_penalty=-1)


def _reference_dsr(sr: float, n: int, skew: float, kurt: float, trials: list[float]) -> float:
    """Bailey & López de Prado (2014), eqs. for SR0 and DSR, written with scipy."""
    var = stats.tstd(trials) ** 2
    g = 0.5772156649015329
    sr0 = math.sqrt(var) * (
        (1 - g) * stats.norm.ppf(1 - 1 / len(trials))
        + g * stats.norm.ppf(1 - 1 / (len(trials) * math.e))
    )
    z = (sr - sr0) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    return float(stats.norm.cdf(z))


def test_deflated_sharpe_matches_the_paper_formula() -> None:
    trials = [0.01, 0.05, -0.02, 0.08, 0.03, 0.0, 0.06]
    dsr, sr0 = deflated_sharpe(0.08, 1000, -0.3, 5.0, trials)
    assert dsr == pytest.approx(_reference_dsr(0.08, 1000, -0.3, 5.0, trials), rel=1e-9)
    assert sr0 == pytest.approx(expected_max_sharpe(trials))
    # One trial: no deflation, the probabilistic Sharpe ratio against 0.
    one, zero = deflated_sharpe(0.08, 1000, 0.0, 3.0, [0.08])
    assert zero == 0.0
    assert one == pytest.approx(
        stats.norm.cdf(0.08 * math.sqrt(999) / math.sqrt(1 + 0.5 * 0.08**2))
    )


def test_more_trials_deflate_more() -> None:
    few = expected_max_sharpe([0.0, 0.05] * 5)
    many = expected_max_sharpe([0.0, 0.05] * 50)
    assert many > few > 0


def _record(i: int, status: Status, sharpe: float | None) -> ExperimentRecord:
    secondary = (
        {} if sharpe is None else {"sharpe": sharpe, "n_obs": 1000.0, "skew": 0.0, "kurtosis": 3.0}
    )
    return make_record(
        id=i,
        status=status,
        description=f"e{i}",
        proposer="knob",
        value=sharpe,
        secondary=secondary,
        holdout={"holdout_sharpe": 9.0},
    )


def test_report_deflates_the_best_kept_strategy_by_the_trials() -> None:
    history = [
        _record(1, Status.KEEP, 0.5),
        _record(2, Status.DISCARD, 0.2),
        _record(3, Status.KEEP, 1.1),
        _record(4, Status.CRASH, None),
        _record(5, Status.GATE_FAILED, 3.0),  # a peeking strategy: tried, never the best
    ]
    report = SharpeObjective().report(history)
    assert report["best_experiment"] == 3
    assert report["trials"] == 4
    root = math.sqrt(252)
    dsr, sr0 = deflated_sharpe(1.1 / root, 1000, 0.0, 3.0, [s / root for s in (0.5, 0.2, 1.1, 3.0)])
    assert report["deflated_sharpe"] == pytest.approx(dsr)
    assert report["expected_max_sharpe"] == pytest.approx(sr0 * root)
    assert 0.0 < report["deflated_sharpe"] < 1.0
    assert SharpeObjective().report([]) == {}


class TestSharpeObjectiveContract(ObjectiveContract):
    eval_text = _summary(_report())

    def make_objective(self) -> Any:
        return SharpeObjective()

    def write_run_files(self, workdir: Path) -> None:
        (workdir / "trading_metrics.json").write_text(json.dumps(_report()))


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "real.json"])
def test_a_planted_link_or_special_file_is_never_read(tmp_path: Path, target: str) -> None:
    """A candidate's link at the metrics path (to /dev/zero: the driver would read without
    end; to a FIFO: it would hang; to a file of its own) is refused, never followed."""
    import os

    metrics = tmp_path / "trading_metrics.json"
    if target == "fifo":
        os.mkfifo(metrics)
    else:
        if target == "real.json":
            (tmp_path / "real.json").write_text(json.dumps(_report()))
        metrics.symlink_to(target if target.startswith("/") else tmp_path / target)
    run = _run(tmp_path, None, printed=_summary(_report()))
    with pytest.raises(MetricMissing, match="not a regular file"):
        SharpeObjective().measure(run)
    # Control: the same report in a plain file is read.
    metrics.unlink()
    metrics.write_text(json.dumps(_report()))
    assert SharpeObjective().measure(run).primary == 1.2
