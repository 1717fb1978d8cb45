"""Noise-aware acceptance policies: threshold, repeated (interleaved A/B) and sequential.

All three read the calibrated per-run noise ``Evidence.noise_sigma`` and ask the loop for
calibration runs of the incumbent at the start and every ``calibrate_every`` experiments.
Values are turned larger-is-better first, so every rule reads "candidate minus incumbent".
The sequential defaults were tuned with ``benchmarks/acceptance.py``; change them there first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from autoresearch._config import AcceptanceConfig
from autoresearch.acceptance._base import (
    Acceptance,
    Decision,
    Evidence,
    Verdict,
    better_or_worse,
)
from autoresearch.acceptance._stats import (
    bootstrap_p_better,
    mean,
    normal_quantile,
    pooled_sigma,
    welch_t_test,
    z_test_p,
)

# Incumbent runs made at the start when the config leaves calibration_runs at 0; with the
# baseline's own run that is 5 runs, 4 degrees of freedom for sigma.
DEFAULT_CALIBRATION_RUNS = 4


def _oriented(evidence: Evidence) -> tuple[list[float], list[float]]:
    sign = -1.0 if evidence.direction == "minimize" else 1.0
    return [sign * v for v in evidence.candidate], [sign * v for v in evidence.incumbent]


def _seed_of(values: Sequence[float]) -> int:
    # A bootstrap seeded by its data: the same evidence always gets the same answer.
    return hash(tuple(round(v, 12) for v in values)) & 0xFFFFFFFF


def significance(
    test: str, cand: Sequence[float], inc: Sequence[float], sigma: float | None
) -> tuple[float, str]:
    """How sure we are that ``cand`` beats ``inc``, as (1 - p or P(better), description).

    ``welch``: one-sided Welch's t-test (needs 2 runs per side; fewer gives 0).
    ``bootstrap``: the seeded bootstrap P(mean(cand) > mean(inc)).
    ``z``: one-sided z-test on the calibrated sigma (works from one run).
    """
    if test == "bootstrap":
        p_better = bootstrap_p_better(cand, inc, seed=_seed_of([*cand, *inc]))
        return p_better, f"bootstrap P(better)={p_better:.3f}"
    if test == "z":
        if sigma is None:
            return 0.0, "z-test without a noise estimate"
        p = z_test_p(mean(cand) - mean(inc), sigma, len(cand), len(inc))
        return 1.0 - p, f"z-test p={p:.3g}"
    if len(cand) < 2 or len(inc) < 2:
        return 0.0, "Welch's test needs 2 runs per side"
    result = welch_t_test(cand, inc)
    return 1.0 - result.p, f"welch t={result.t:.2f} df={result.df:.1f} p={result.p:.3g}"


class NoiseAware(Acceptance):
    """Shared parts: the calibration schedule and the noise a rule uses."""

    def calibration_runs(self, experiments_done: int) -> int:
        runs = self.config.calibration_runs or DEFAULT_CALIBRATION_RUNS
        if experiments_done == 0:
            return runs
        every = self.config.calibrate_every
        return runs if every and experiments_done % every == 0 else 0

    @staticmethod
    def sigma(evidence: Evidence, cand: Sequence[float], inc: Sequence[float]) -> float | None:
        """The calibrated noise, else what the runs at hand show (None if nothing shows)."""
        if evidence.noise_sigma is not None:
            return evidence.noise_sigma
        return pooled_sigma([cand, inc])


class Threshold(NoiseAware):
    """One run of the candidate against the incumbent's mean: keep if the improvement
    exceeds ``max(min_delta, z * sigma)``. Cheapest noise-aware rule; with one run per
    candidate its false discoveries rest on ``z`` alone."""

    name = "threshold"

    def decide(self, evidence: Evidence) -> Decision:
        cand, inc = _oriented(evidence)
        gain = mean(cand) - mean(inc)
        sigma = self.sigma(evidence, cand, inc)
        bar = self.config.min_delta
        if sigma is not None:
            bar = max(bar, self.config.z * sigma)
        noise = f"z={self.config.z:g}, sigma={sigma:.3g}" if sigma is not None else "no sigma yet"
        reason = f"{better_or_worse(gain)} than the incumbent's mean, bar {bar:.6g} ({noise})"
        return Decision(Verdict.KEEP if gain > bar else Verdict.DISCARD, reason)


class Repeated(NoiseAware):
    """``repeats`` runs of the candidate, interleaved with as many fresh runs of the
    incumbent (A/B/A/B, so slow drift hits both), then one test: keep if significant
    (p < p_value, or bootstrap P(better) >= p_better) and the mean gain exceeds
    ``min_delta``. Robust and simple; costs about 2 x repeats runs per candidate."""

    name = "repeated"
    default_repeats = 3
    default_test = "welch"
    default_p_value = 0.05

    def __init__(self, config: AcceptanceConfig | None = None, **fields: Any) -> None:
        super().__init__(config, **fields)
        c = self.config
        self.repeats = c.repeats if c.repeats is not None else self.default_repeats
        self.test = c.test if c.test is not None else self.default_test
        self.p_value = c.p_value if c.p_value is not None else self.default_p_value

    @property
    def max_runs_per_candidate(self) -> int:  # type: ignore[override]
        return self.repeats

    def decide(self, evidence: Evidence) -> Decision:
        cand, inc = _oriented(evidence)
        missing = self.repeats - len(cand)
        if missing > 0:
            return Decision(Verdict.MEASURE, f"{len(cand)}/{self.repeats} runs", missing, missing)
        return self.judge(cand, inc, self.sigma(evidence, cand, inc))

    def passes(self, cand: Sequence[float], inc: Sequence[float], sigma: float | None) -> bool:
        score, _ = significance(self.test, cand, inc, sigma)
        bar = self.config.p_better if self.test == "bootstrap" else 1.0 - self.p_value
        return score >= bar and mean(cand) - mean(inc) > self.config.min_delta

    def judge(self, cand: Sequence[float], inc: Sequence[float], sigma: float | None) -> Decision:
        _, what = significance(self.test, cand, inc, sigma)
        gain = mean(cand) - mean(inc)
        reason = f"mean {better_or_worse(gain)} over {len(cand)} vs {len(inc)} runs, {what}"
        verdict = Verdict.KEEP if self.passes(cand, inc, sigma) else Verdict.DISCARD
        return Decision(verdict, reason)


class Sequential(Repeated):
    """Spend runs only where they can change the answer (a truncated sequential test).

    1. Before judging, the incumbent is re-measured up to ``incumbent_min`` runs: a fresh
       keep enters with lucky runs, and every later comparison leans on its mean.
    2. One run of the candidate: discard at once unless it beats the incumbent's mean by
       ``-reject_margin_sigma`` sigma (most neutral and worse ideas stop here).
    3. Otherwise one more run at a time, each paired with a run of the incumbent while it
       has fewer than ``incumbent_runs``; discard as soon as the mean gain falls below
       ``futility_fraction`` of the gain the final test will need (a z-test at ``p_value``
       after ``repeats`` runs). The bar is fixed in metric units, so it does not loosen as
       runs accumulate the way a bar on z does: ideas too small to pass stop early, and the
       runs go to the ones that can.
    4. After ``repeats`` runs, keep if the test passes (default: z on the calibrated sigma,
       p < 0.03). No keep before that: stopping at the first significant look records a
       mean biased upward, and the last runs are what pull it back toward the truth.
    """

    name = "sequential"
    default_repeats = 7
    default_test = "z"
    default_p_value = 0.03
    # Runs of the incumbent before judging (incumbent_min) and while pairing (incumbent_runs):
    # six at the default depth; a lower ``repeats`` (a coarser policy for slow experiments)
    # lowers them too, so a cheap preset stays cheap.
    incumbent_min = 6
    incumbent_runs = 6
    futility_fraction = 0.6

    def __init__(self, config: AcceptanceConfig | None = None, **fields: Any) -> None:
        super().__init__(config, **fields)
        if self.config.repeats is not None and self.config.repeats < self.incumbent_min:
            self.incumbent_min = self.incumbent_runs = self.config.repeats

    def final_bar(self, sigma: float, incumbent_runs: int) -> float:
        """The mean gain a z-test at ``p_value`` needs after ``repeats`` runs of the
        candidate against ``incumbent_runs`` runs of the incumbent."""
        m = max(incumbent_runs, self.incumbent_runs)
        return normal_quantile(1.0 - self.p_value) * sigma * math.sqrt(1.0 / self.repeats + 1.0 / m)

    def decide(self, evidence: Evidence) -> Decision:
        cand, inc = _oriented(evidence)
        if len(inc) < self.incumbent_min:
            more = self.incumbent_min - len(inc)
            return Decision(Verdict.MEASURE, f"re-measure the incumbent ({len(inc)} runs)", 0, more)
        sigma = self.sigma(evidence, cand, inc)
        n = len(cand)
        if n >= self.repeats:
            return self.judge(cand, inc, sigma)
        gain = mean(cand) - mean(inc)
        if not sigma:
            # No spread in any repeated run: a deterministic metric, where one run decides.
            verdict = Verdict.KEEP if gain > self.config.min_delta else Verdict.DISCARD
            return Decision(verdict, f"{better_or_worse(gain)} with no measurable noise")
        z = gain / (sigma * math.sqrt(1.0 / n + 1.0 / len(inc)))
        if n == 1 and gain < -self.config.reject_margin_sigma * sigma:
            return Decision(
                Verdict.DISCARD,
                f"first run {better_or_worse(gain)} than the incumbent's mean "
                f"(needs > {-self.config.reject_margin_sigma:g} sigma, sigma={sigma:.3g})",
            )
        futile = self.futility_fraction * self.final_bar(sigma, len(inc))
        if n >= 2 and gain < futile:
            return Decision(
                Verdict.DISCARD,
                f"fell back: mean {better_or_worse(gain)} after {n} runs, below {futile:.6g} "
                f"({self.futility_fraction:g} of the final bar)",
            )
        more_inc = 1 if len(inc) < max(n + 1, self.incumbent_runs) else 0
        return Decision(Verdict.MEASURE, f"promising: z={z:.2f} after {n} runs", 1, more_inc)
