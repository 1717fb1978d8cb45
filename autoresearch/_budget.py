"""When a run stops: experiment count, wall clock, spend."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """The run's limits; ``reason`` says which one ends the run now (None: go on)."""

    max_experiments: int | None = None
    max_hours: float | None = None
    max_cost_usd: float | None = None
    max_tokens: int | None = None

    def reason(
        self,
        done: int,
        elapsed_s: float,
        durations_s: list[float],
        tokens: int,
        cost_usd: float,
        proposals: int,
    ) -> str | None:
        if self.max_experiments is not None and done >= self.max_experiments:
            return f"reached --max-experiments {self.max_experiments}"
        if self.max_hours is not None:
            # Do not start an experiment that would typically end past the limit.
            typical = statistics.median(durations_s) if durations_s else 0.0
            if elapsed_s + typical > self.max_hours * 3600:
                return f"reached --max-hours {self.max_hours:g}"
        # Stop *before* a spend budget is exceeded: the next proposal is assumed to cost what
        # an average one has cost so far.
        n = max(1, proposals)
        if self.max_cost_usd is not None and cost_usd + cost_usd / n > self.max_cost_usd:
            return (
                f"spent ${cost_usd:.4f}; another proposal would pass "
                f"--max-cost-usd {self.max_cost_usd:g}"
            )
        if self.max_tokens is not None and tokens + tokens / n > self.max_tokens:
            return (
                f"used {tokens} tokens; another proposal would pass --max-tokens {self.max_tokens}"
            )
        return None
