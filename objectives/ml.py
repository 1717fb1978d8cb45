"""Objectives for language-model training domains."""

from __future__ import annotations

import math
from collections.abc import Sequence

from autoresearch import Measurement, MetricMissing, Objective, RunResult, parse_summary

# What a training run reports beside val_bpb (device-neutral names).
DEFAULT_SECONDARY = (
    "training_seconds",
    "total_seconds",
    "peak_mem_mb",
    "mfu_percent",
    "total_tokens_M",
    "num_steps",
    "num_params_M",
)


class ValBpb(Objective):
    """Validation bits per byte, read from the ``---`` summary block of the fixed evaluator.

    val_bpb = summed cross-entropy (nats) of the validation targets / their summed UTF-8 bytes
    / ln 2: independent of the tokenizer, lower is better. Only the output of ``eval_command``
    (fixed harness code) is read, so a training script that prints its own ``val_bpb:`` line
    changes nothing. A domain without an ``eval_command`` is refused unless
    ``require_eval=False``.
    """

    def __init__(
        self,
        metric: str = "val_bpb",
        secondary: Sequence[str] = DEFAULT_SECONDARY,
        holdout: Sequence[str] = (),
        require_eval: bool = True,
    ) -> None:
        self.metric = metric
        self.secondary = tuple(secondary)
        self.holdout = tuple(holdout)
        self.require_eval = require_eval

    def measure(self, run: RunResult) -> Measurement:
        if self.require_eval and run.eval_log_path is None:
            raise MetricMissing(
                f"{self.metric} is trusted only from a fixed evaluator: set eval_command in "
                "autoresearch.toml (or ValBpb(require_eval=False) to read the command's output)"
            )
        values = parse_summary(run.trusted_output())
        if self.metric not in values:
            raise MetricMissing(f"no '{self.metric}:' line in the evaluator's '---' summary block")
        value = values[self.metric]
        # Cross-entropy is never negative; zero would mean the evaluator saw the answers.
        if not math.isfinite(value) or value <= 0:
            raise MetricMissing(f"{self.metric} is {value}: not a possible bits-per-byte value")
        secondary = {k: values[k] for k in self.secondary if k in values}
        holdout = {k: values[k] for k in self.holdout if k in values}
        return Measurement(value, secondary, holdout)
