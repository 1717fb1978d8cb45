"""``paired``: A/B pairs taken side by side, decided on the median of per-pair ratios.

For a throughput or latency benchmark on a shared machine, where load comes and goes: the
candidate and the incumbent run interleaved (C I C I ..., each run a fresh process), each
candidate run paired with the incumbent run right after it, so that both halves of a pair
share the machine's load of their moment. The noise is the spread of this comparison's own
pairs, never an estimate from earlier runs under another load.

Each pair gives a ratio (candidate rate / incumbent rate, or incumbent time / candidate
time, whichever ``direction`` makes "larger is better"); gain = ratio - 1. Keep only if
the median gain exceeds ``min_gain`` and a distribution-free 95% interval of the median
(the sign test's order statistics, pyperf/asv practice) lies wholly above no gain.
"""

from __future__ import annotations

import functools
import math
import platform
from collections.abc import Sequence
from typing import Any

from autoresearch._config import AcceptanceConfig
from autoresearch._errors import ConfigError
from autoresearch.acceptance._base import Acceptance, Decision, Evidence, Verdict
from autoresearch.acceptance._stats import median, median_interval

# The fewest pairs a decision rests on: below 6 no order statistic of the sign test reaches
# 95% coverage (5 pairs give (min, max) 93.75%), so the interval could never exclude no gain
# and nothing would ever be kept.
MIN_PAIRS = 6
DEFAULT_PAIRS = 6
CONFIDENCE = 0.95


@functools.cache
def machine_summary() -> str:
    """Host, CPU model and Python version, recorded with every decision."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"host {platform.node()}, CPU {cpu}, Python {platform.python_version()}"


def pair_gains(pairs: Sequence[tuple[float, float]], direction: str) -> list[float]:
    """Per-pair gains (positive: the candidate is better): ratio - 1 of (candidate,
    incumbent) values that are rates (maximize) or times (minimize)."""
    out = []
    for cand, inc in pairs:
        if cand <= 0 or inc <= 0 or not (math.isfinite(cand) and math.isfinite(inc)):
            raise ValueError(f"a pair ({cand:g}, {inc:g}) is not two positive values")
        out.append(cand / inc - 1.0 if direction == "maximize" else inc / cand - 1.0)
    return out


class Paired(Acceptance):
    """``repeats`` pairs (default 6, at least 5) of candidate and incumbent runs, taken
    side by side; keep if the median per-pair gain > ``min_gain`` and its 95% interval
    excludes no gain. Costs 2 x repeats runs per candidate, no calibration runs."""

    name = "paired"

    def __init__(self, config: AcceptanceConfig | None = None, **fields: Any) -> None:
        super().__init__(config, **fields)
        self.pairs = self.config.repeats if self.config.repeats is not None else DEFAULT_PAIRS
        if self.pairs < MIN_PAIRS:
            raise ConfigError(
                f"acceptance.repeats: the paired policy needs at least {MIN_PAIRS} pairs, "
                f"got {self.pairs}"
            )

    @property
    def max_runs_per_candidate(self) -> int:  # type: ignore[override]
        return self.pairs

    def decide(self, evidence: Evidence) -> Decision:
        if evidence.paired is None:
            return Decision(
                Verdict.DISCARD,
                "the paired policy decides on incumbent runs taken beside the candidate's "
                "(Evidence.paired), and this caller takes none",
            )
        more_cand = self.pairs - len(evidence.candidate)
        more_inc = self.pairs - len(evidence.paired)
        if more_cand > 0 or more_inc > 0:
            return Decision(
                Verdict.MEASURE,
                f"{len(evidence.pairs())}/{self.pairs} pairs",
                max(more_cand, 0),
                max(more_inc, 0),
            )
        pairs = evidence.pairs()
        if len(pairs) < MIN_PAIRS:
            return Decision(
                Verdict.DISCARD, f"only {len(pairs)} pairs completed (incumbent runs failed)"
            )
        try:
            gains = pair_gains(pairs, evidence.direction)
        except ValueError as e:
            return Decision(Verdict.DISCARD, f"cannot form ratios: {e}")
        med = median(gains)
        low, high = median_interval(gains, CONFIDENCE)
        wins = sum(g > 0 for g in gains)
        reason = (
            f"median gain {med:+.2%} over {len(gains)} pairs ({wins} faster), "
            f"{CONFIDENCE:.0%} interval [{low:+.2%}, {high:+.2%}], min_gain "
            f"{self.config.min_gain:.2%}; {machine_summary()}"
        )
        keep = med > self.config.min_gain and low > 0
        return Decision(Verdict.KEEP if keep else Verdict.DISCARD, reason)


__all__ = ["DEFAULT_PAIRS", "MIN_PAIRS", "Paired", "machine_summary", "pair_gains"]
