"""Objectives for verifiable-task domains (RL fine-tuning, any benchmark scored right/wrong)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from autoresearch import (
    Measurement,
    MetricMissing,
    Objective,
    RunResult,
    load_run_json,
    parse_summary,
)

# The evaluator prints 6 decimals: a JSON figure this close to the printed one agrees.
PRINTED_TOL = 1e-6


def binomial_se(accuracy: float, n: int) -> float:
    """The standard error of an accuracy measured on ``n`` independent problems."""
    return math.sqrt(max(0.0, accuracy * (1.0 - accuracy)) / n) if n > 0 else math.inf


class Accuracy(Objective):
    """Accuracy of a fixed evaluator, with its standard error and the number of problems.

    Reads the ``---`` summary block of ``eval_command`` (never the training command's output):
    ``metric`` (a fraction in [0, 1]) and ``n_key`` (the problems scored, an integer >= 1).
    Records ``<metric>_se`` = sqrt(p(1-p)/n), recomputed here from the two, and ``n``, so every
    comparison shows how far noise alone moves the figure (on 200 problems near 0.5, ~3.5
    points). ``secondary`` names further figures of the block to record (missing ones are
    skipped).

    Holdout: with ``metrics_file`` set, the evaluator writes ``{"selection": {...},
    "holdout": {...}}`` there; the holdout's ``metric``, its SE and n are recorded as
    ``holdout_*`` (never used to decide, never shown to a proposer). The file's selection
    figure must equal the printed one, so a file left by someone else cannot supply them.
    """

    def __init__(
        self,
        metric: str = "accuracy",
        n_key: str = "n",
        secondary: Sequence[str] = (
            "accuracy_strict",
            "eval_seconds",
            "eval_tokens_per_s",
            "mean_completion_tokens",
        ),
        metrics_file: str | None = None,
        require_eval: bool = True,
    ) -> None:
        self.metric = metric
        self.n_key = n_key
        self.secondary = tuple(secondary)
        self.metrics_file = metrics_file
        self.require_eval = require_eval

    def measure(self, run: RunResult) -> Measurement:
        if self.require_eval and run.eval_log_path is None:
            raise MetricMissing(
                f"{self.metric} is trusted only from a fixed evaluator: set eval_command in "
                "autoresearch.toml (or Accuracy(require_eval=False))"
            )
        values = parse_summary(run.trusted_output())
        accuracy, n = self._figures(values, "the evaluator's '---' summary block")
        secondary = {f"{self.metric}_se": binomial_se(accuracy, n), "n": float(n)}
        secondary.update({k: values[k] for k in self.secondary if k in values})
        holdout = self._holdout(run, accuracy) if self.metrics_file else {}
        return Measurement(accuracy, secondary, holdout)

    def _figures(self, values: Mapping[str, Any], where: str) -> tuple[float, int]:
        if self.metric not in values:
            raise MetricMissing(f"no '{self.metric}:' in {where}")
        if self.n_key not in values:
            raise MetricMissing(f"no '{self.n_key}:' (problems scored) in {where}")
        accuracy, n = values[self.metric], values[self.n_key]
        if not isinstance(accuracy, (int, float)) or isinstance(accuracy, bool):
            raise MetricMissing(f"{self.metric} in {where} is not a number")
        if not math.isfinite(accuracy) or not 0.0 <= accuracy <= 1.0:
            raise MetricMissing(f"{self.metric} = {accuracy} in {where}: not a fraction in [0, 1]")
        if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 1 or n != int(n):
            raise MetricMissing(f"{self.n_key} = {n} in {where}: not a count of problems")
        return float(accuracy), int(n)

    def _holdout(self, run: RunResult, printed: float) -> dict[str, float]:
        assert self.metrics_file is not None
        data = load_run_json(run.workdir / self.metrics_file)
        if not isinstance(data, dict) or not isinstance(data.get("selection"), dict):
            raise MetricMissing(f"{self.metrics_file} has no 'selection' section")
        selection, _ = self._figures(data["selection"], self.metrics_file)
        if abs(selection - printed) > PRINTED_TOL:
            raise MetricMissing(
                f"{self.metrics_file} says {self.metric} {selection:.6f}, the evaluator printed "
                f"{printed:.6f}: the file was not written by this evaluation"
            )
        hold = data.get("holdout")
        if not isinstance(hold, dict) or not hold:
            return {}
        accuracy, n = self._figures(hold, f"{self.metrics_file}'s holdout")
        out = {
            f"holdout_{self.metric}": accuracy,
            f"holdout_{self.metric}_se": binomial_se(accuracy, n),
            "holdout_n": float(n),
        }
        for k in self.secondary:
            v = hold.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                out[f"holdout_{k}"] = float(v)
        return out
