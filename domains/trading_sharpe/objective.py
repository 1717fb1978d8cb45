"""Trading objectives: out-of-sample Sharpe after costs, gates against look-ahead, and the
deflated Sharpe ratio of the best strategy given how many were tried.

The objective reads the JSON file that a fixed harness writes inside the sandbox (it never
imports the strategy). Expected layout (``domains/trading_sharpe/harness.py`` writes it)::

    {"insample":   {"sharpe": .., "max_drawdown": .., "turnover": .., "trades": .., "cagr": ..},
     "validation": {same keys, plus "n_obs", "skew", "kurtosis", "sharpe_min_window"},
     "holdout":    {same keys as validation, or {"error": ".."}},
     "gates":      {"lookahead_ok": bool, "lookahead_detail": str, "nan_positions": int,
                    "trades": number}}

The harness also prints ``val_sharpe: ..`` and ``lookahead_ok: ..`` on its stdout (the eval
log); a JSON file that disagrees with them was not written by the harness (MetricMissing, or a
failed gate), so rewriting the file alone cannot change a recorded figure.

Sharpe figures are annualized; ``kurtosis`` is Pearson's (3 for a normal distribution);
``max_drawdown`` is a positive fraction of equity; ``turnover`` is traded notional per year
as a multiple of equity.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from statistics import NormalDist
from typing import Any

from autoresearch import (
    ExperimentRecord,
    GateResult,
    Measurement,
    MetricMissing,
    Objective,
    RunResult,
    Status,
    load_run_json,
)

# Figures copied from each section of the JSON into the Measurement.
FIGURES = ("sharpe", "max_drawdown", "turnover", "trades", "cagr")
MOMENTS = ("n_obs", "skew", "kurtosis")
EULER_GAMMA = 0.5772156649015329
# The harness prints figures with 6 decimals: a JSON value this close to the line matches.
PRINTED_TOL = 1e-6
_NORMAL = NormalDist()


class SharpeObjective(Objective):
    """Validation (walk-forward) Sharpe after costs as the primary metric.

    ``primary="sharpe"`` decides on the Sharpe ratio; ``primary="penalized"`` on
    Sharpe - turnover_penalty * turnover - drawdown_penalty * max_drawdown. Either way every
    figure is recorded; holdout figures go to ``Measurement.holdout`` only.
    The gate fails a strategy that looks ahead, emits NaN positions or trades fewer than
    ``min_trades`` times in validation.
    """

    def __init__(
        self,
        metrics_file: str = "trading_metrics.json",
        primary: str = "sharpe",
        min_trades: int = 10,
        turnover_penalty: float = 0.0,
        drawdown_penalty: float = 0.0,
        periods_per_year: float = 252.0,
    ) -> None:
        if primary not in ("sharpe", "penalized"):
            raise ValueError(f"primary must be 'sharpe' or 'penalized', got {primary!r}")
        if min_trades < 0 or turnover_penalty < 0 or drawdown_penalty < 0:
            raise ValueError("min_trades and the penalties must be >= 0")
        self.metrics_file = metrics_file
        self.primary = primary
        self.min_trades = min_trades
        self.turnover_penalty = turnover_penalty
        self.drawdown_penalty = drawdown_penalty
        self.periods_per_year = periods_per_year

    def _load(self, run: RunResult) -> dict[str, Any]:
        # A regular file of bounded size only: a candidate may have left a link to /dev/zero
        # (or a FIFO) in its place, which would hang the driver or fill its memory.
        data = load_run_json(run.workdir / self.metrics_file)
        if not isinstance(data, dict) or not isinstance(data.get("validation"), dict):
            raise MetricMissing(f"{self.metrics_file} has no 'validation' section")
        return data

    def _printed(self, run: RunResult, key: str) -> float:
        """The last ``key: value`` line of the harness's own output (the eval log)."""
        found = re.findall(rf"^{key}:\s*(\S+)\s*$", run.trusted_output(), re.MULTILINE)
        try:
            return float(found[-1])
        except (IndexError, ValueError):
            raise MetricMissing(
                f"the eval output has no '{key}:' line to check {self.metrics_file} against"
            ) from None

    def penalized(self, figures: Mapping[str, float]) -> float:
        return (
            figures["sharpe"]
            - self.turnover_penalty * figures.get("turnover", 0.0)
            - self.drawdown_penalty * figures.get("max_drawdown", 0.0)
        )

    def measure(self, run: RunResult) -> Measurement:
        data = self._load(run)
        val = _numbers(data["validation"])
        if "sharpe" not in val or not math.isfinite(val["sharpe"]):
            raise MetricMissing(f"{self.metrics_file}: no finite validation sharpe")
        if abs(self._printed(run, "val_sharpe") - val["sharpe"]) > PRINTED_TOL:
            raise MetricMissing(
                f"{self.metrics_file} says val_sharpe {val['sharpe']:.6f}, the eval output "
                f"printed {self._printed(run, 'val_sharpe'):.6f}: the file was altered"
            )
        secondary = {k: val[k] for k in (*FIGURES, *MOMENTS, "sharpe_min_window") if k in val}
        secondary["penalized"] = self.penalized(val)
        ins = _numbers(data.get("insample", {}))
        secondary.update({f"insample_{k}": ins[k] for k in FIGURES if k in ins})
        hold = _numbers(data.get("holdout", {}))
        holdout = {f"holdout_{k}": hold[k] for k in FIGURES if k in hold}
        if "sharpe" in hold:
            holdout["holdout_penalized"] = self.penalized(hold)
        primary = secondary["penalized"] if self.primary == "penalized" else val["sharpe"]
        return Measurement(primary, secondary, holdout)

    def gate(self, run: RunResult) -> GateResult:
        try:
            gates = self._load(run).get("gates")
        except MetricMissing as e:
            return GateResult(False, str(e))
        if not isinstance(gates, dict):
            return GateResult(False, f"{self.metrics_file} has no 'gates' section")
        try:
            printed_ok = self._printed(run, "lookahead_ok")
        except MetricMissing as e:
            return GateResult(False, str(e))
        if gates.get("lookahead_ok") is True and printed_ok != 1:
            return GateResult(False, f"look-ahead: {self.metrics_file} disagrees with the eval")
        if gates.get("lookahead_ok") is not True:
            detail = gates.get("lookahead_detail") or "positions changed on truncated data"
            return GateResult(False, f"look-ahead: {detail}")
        nan_positions = gates.get("nan_positions")
        if not isinstance(nan_positions, (int, float)) or nan_positions != 0:
            return GateResult(
                False, f"{nan_positions} NaN/inf positions: fill warm-up rows with 0 in strategy.py"
            )
        trades = gates.get("trades")
        if not isinstance(trades, (int, float)) or trades < self.min_trades:
            return GateResult(
                False,
                f"{trades} trades in validation, fewer than min_trades={self.min_trades}: "
                "a Sharpe from so few trades is not evidence",
            )
        return GateResult(True)

    def report(self, history: Sequence[ExperimentRecord]) -> Mapping[str, float]:
        """The deflated Sharpe ratio of the best kept strategy, over every measured trial."""
        trials = [r for r in history if r.value is not None and "sharpe" in r.secondary]
        if not trials:
            return {}
        kept = [r for r in trials if r.status is Status.KEEP] or trials
        best = max(kept, key=lambda r: float(r.value or 0.0))
        root = math.sqrt(self.periods_per_year)
        per_period = [float(r.secondary["sharpe"]) / root for r in trials]
        sec = best.secondary
        dsr, sr0 = deflated_sharpe(
            sharpe=float(sec["sharpe"]) / root,
            n_obs=int(sec.get("n_obs", 0)),
            skew=float(sec.get("skew", 0.0)),
            kurtosis=float(sec.get("kurtosis", 3.0)),
            trial_sharpes=per_period,
        )
        return {
            "best_experiment": float(best.id),
            "best_sharpe": float(sec["sharpe"]),
            "trials": float(len(trials)),
            "expected_max_sharpe": sr0 * root,
            "deflated_sharpe": dsr,
        }


def expected_max_sharpe(trial_sharpes: Sequence[float]) -> float:
    """The Sharpe the best of N unskilled trials would reach (Bailey & López de Prado, 2014).

    Uses the variance of the trials' own Sharpe ratios; 0 for fewer than two trials.
    """
    n = len(trial_sharpes)
    if n < 2:
        return 0.0
    mean = sum(trial_sharpes) / n
    var = sum((s - mean) ** 2 for s in trial_sharpes) / (n - 1)
    a = _NORMAL.inv_cdf(1.0 - 1.0 / n)
    b = _NORMAL.inv_cdf(1.0 - 1.0 / (n * math.e))
    return math.sqrt(var) * ((1.0 - EULER_GAMMA) * a + EULER_GAMMA * b)


def deflated_sharpe(
    sharpe: float, n_obs: int, skew: float, kurtosis: float, trial_sharpes: Sequence[float]
) -> tuple[float, float]:
    """P(true Sharpe > the best-of-N-trials benchmark), and that benchmark.

    All Sharpe ratios per period (not annualized); ``kurtosis`` is Pearson's (normal = 3).
    """
    sr0 = expected_max_sharpe(trial_sharpes)
    if n_obs < 2:
        return 0.0, sr0
    denom = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if denom <= 0:
        return 0.0, sr0
    z = (sharpe - sr0) * math.sqrt(n_obs - 1) / math.sqrt(denom)
    return _NORMAL.cdf(z), sr0


def _numbers(section: object) -> dict[str, float]:
    if not isinstance(section, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in section.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }
