"""When a run stops: experiment count, wall clock, spend."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from autoresearch._types import HARNESS_CAUSES, Cause, ExperimentRecord

# Consecutive proposer or objective bugs (exceptions other than ProposalError) after which
# the loop gives up.
MAX_HARNESS_ERRORS = 5
# After a ProposalError (the proposer could not propose this time) the next try waits longer.
PROPOSAL_BACKOFF_S = 2.0
MAX_PROPOSAL_BACKOFF_S = 300.0


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


@dataclass
class Streaks:
    """Failures in a row that are not the candidates' fault. Bugs of the proposer or of the
    objective end the run after a few (more experiments will not fix them); a proposer that
    could not propose (an endpoint down, answers that do not parse) never ends it but waits
    longer after each miss."""

    errors: int = 0
    misses: int = 0

    def after(self, record: ExperimentRecord) -> tuple[str | None, float]:
        """(why the run stops, or None; seconds to wait before the next proposal)."""
        self.errors = self.errors + 1 if record.cause in HARNESS_CAUSES else 0
        if self.errors >= MAX_HARNESS_ERRORS:
            return f"{self.errors} proposer/objective errors in a row: {record.reason}", 0.0
        self.misses = self.misses + 1 if record.cause is Cause.NO_PROPOSAL else 0
        if not self.misses:
            return None, 0.0
        return None, min(MAX_PROPOSAL_BACKOFF_S, PROPOSAL_BACKOFF_S * 2 ** (self.misses - 1))
