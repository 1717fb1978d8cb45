"""Noise-aware acceptance policies: threshold, repeated (interleaved A/B) and sequential.

All three read the calibrated per-run noise ``Evidence.noise_sigma`` and ask the loop for
calibration runs of the incumbent at the start and every ``calibrate_every`` experiments.
Values are turned larger-is-better first, so every rule reads "candidate minus incumbent".

On a shared machine both the noise and the mean drift as other processes come and go, so a
comparison with incumbent runs taken minutes earlier can see a gain that is only the load.
Every keep therefore rests on pairs: each candidate run that the keep counts against an
incumbent run taken beside it (``Evidence.paired``), so that the load of that moment hits
both. The incumbent's long-run mean only screens: it can discard a candidate early, never
keep one. Where the caller takes no such runs (``Evidence.paired is None``, a driver of its
own), each policy falls back to comparing with the incumbent's mean, as before pairing.
The defaults were tuned with ``benchmarks/acceptance.py`` (a stationary and a drifting
stream); change them there first.
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
    estimate_sigma,
    mean,
    normal_quantile,
    pooled_sigma,
    successive_difference_sigma,
    welch_t_test,
    z_test_p,
)

# Incumbent runs made at the start when the config leaves calibration_runs at 0; with the
# baseline's own run that is 5 runs, 4 degrees of freedom for sigma.
DEFAULT_CALIBRATION_RUNS = 4
# The fewest pairs whose own spread counts as a noise estimate (2 degrees of freedom).
OWN_SPREAD_PAIRS = 3
INCUMBENT_MEAN = "the incumbent's mean"
BESIDE = "the incumbent's run beside it"
EACH = "the incumbent run beside each"
ALL_FAILED = "every incumbent run beside the candidate's failed"


def _oriented(evidence: Evidence) -> tuple[list[float], list[float]]:
    sign = -1.0 if evidence.direction == "minimize" else 1.0
    return [sign * v for v in evidence.candidate], [sign * v for v in evidence.incumbent]


def _oriented_pairs(evidence: Evidence) -> list[tuple[float, float]]:
    sign = -1.0 if evidence.direction == "minimize" else 1.0
    return [(sign * c, sign * i) for c, i in evidence.pairs()]


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


def pair_sigma(diffs: Sequence[float], sigma: float | None) -> float:
    """The noise of one pair's difference: the larger of what the calibrated sigma implies
    (sqrt 2 sigma) and what these pairs show (from 3 pairs on), so that a sigma calibrated
    under a lighter load cannot make a keep."""
    own = estimate_sigma(diffs) if len(diffs) >= OWN_SPREAD_PAIRS else None
    implied = math.sqrt(2.0) * sigma if sigma else 0.0
    return max(implied, own or 0.0)


def _pair_partner(evidence: Evidence) -> Decision:
    n = len(evidence.candidate)
    more = n - len(evidence.paired or ())
    return Decision(Verdict.MEASURE, f"{BESIDE} (run {n})", 0, more)


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
    """The cheap rule: most candidates cost one run, and the few that look like a gain get
    a short paired confirmation.

    1. Screen: one run of the candidate against the incumbent's mean; discard unless it is
       better by more than ``max(min_delta, 0.75 * z * sigma)`` (the screen only discards).
    2. One incumbent run beside that run: discard unless the candidate's run beats it (the
       load of that moment hits both, so a screen passed on a lighter load stops here).
    3. Confirm on ``CONFIRM_PAIRS`` fresh pairs (I C I C ..., each candidate run with the
       incumbent run just before it), stopping as soon as their mean gain is not positive:
       keep if it exceeds ``max(min_delta, z * s_pair / sqrt(pairs))``. The screened first
       run is left out of this test: it was chosen for being high. ``s_pair`` is sqrt 2
       times the largest of the calibrated sigma, the sigma of the incumbent's recent runs
       (``RECENT_RUNS``, by successive differences, so a drifting mean does not count) and
       the fresh pairs' own spread, so a sigma calibrated under a lighter load cannot make
       a keep.

    Without pairs (``Evidence.paired is None``: a driver of its own), or on a metric with no
    noise, one run against the incumbent's mean at ``max(min_delta, z * sigma)`` decides,
    the rule before pairing."""

    name = "threshold"
    # The screen's bar, as a fraction of z sigma: a little below the keep's, so the
    # confirmation sees the gains a strict screen would lose to one low draw.
    SCREEN_FRACTION = 0.75
    # Fresh pairs that confirm a screened candidate (after the pair of its first run).
    CONFIRM_PAIRS = 4
    # The incumbent's latest runs (calibration and runs beside candidates, in order) whose
    # successive differences say how noisy the machine is now.
    RECENT_RUNS = 8
    max_runs_per_candidate = 1 + CONFIRM_PAIRS

    def decide(self, evidence: Evidence) -> Decision:
        cand, inc = _oriented(evidence)
        sigma = self.sigma(evidence, cand, inc)
        z, min_delta = self.config.z, self.config.min_delta
        if evidence.paired is None or not sigma:
            # No pairs taken (a driver of its own), or a deterministic metric: the mean decides.
            gain = mean(cand) - mean(inc)
            bar = max(min_delta, z * sigma) if sigma is not None else min_delta
            noise = f"z={z:g}, sigma={sigma:.3g}" if sigma is not None else "no sigma yet"
            reason = f"{better_or_worse(gain, INCUMBENT_MEAN)}, bar {bar:.6g} ({noise})"
            return Decision(Verdict.KEEP if gain > bar else Verdict.DISCARD, reason)
        n = len(cand)
        if n == 1 and not evidence.paired:
            gain = cand[0] - mean(inc)
            bar = max(min_delta, self.SCREEN_FRACTION * z * sigma)
            reason = (
                f"{better_or_worse(gain, INCUMBENT_MEAN)}, screen bar {bar:.6g} "
                f"({self.SCREEN_FRACTION:g} z sigma, z={z:g}, sigma={sigma:.3g})"
            )
            if gain <= bar:
                return Decision(Verdict.DISCARD, reason)
        if len(evidence.paired) < n:
            return _pair_partner(evidence)
        sign = -1.0 if evidence.direction == "minimize" else 1.0
        beside = [sign * v for v in evidence.paired]
        if n == 1:
            if beside[0] != beside[0]:
                return Decision(Verdict.DISCARD, f"screened; {BESIDE} failed")
            d1 = cand[0] - beside[0]
            if d1 <= 0:
                return Decision(Verdict.DISCARD, f"screened; {better_or_worse(d1, BESIDE)}")
            return Decision(
                Verdict.MEASURE, f"screened, {better_or_worse(d1, BESIDE)}: confirming", 1, 1
            )
        diffs = [c - i for c, i in zip(cand[1:], beside[1:], strict=False) if i == i]
        if not diffs:
            if n - 1 >= self.CONFIRM_PAIRS:
                return Decision(Verdict.DISCARD, ALL_FAILED)
            return Decision(Verdict.MEASURE, "confirming: no fresh pair yet", 1, 1)
        s_pair = self.pair_noise(evidence, diffs, sigma)
        bar = max(min_delta, z * s_pair / math.sqrt(len(diffs)))
        d_gain = mean(diffs)
        what = (
            f"mean {better_or_worse(d_gain, EACH)} over {len(diffs)} fresh pairs, bar "
            f"{bar:.6g} (z={z:g}, sigma of a pair {s_pair:.3g})"
        )
        if n - 1 >= self.CONFIRM_PAIRS:
            return Decision(Verdict.KEEP if d_gain > bar else Verdict.DISCARD, what)
        if d_gain <= 0:
            return Decision(Verdict.DISCARD, f"fell back: {what}")
        return Decision(Verdict.MEASURE, f"confirming: {what}", 1, 1)

    def pair_noise(self, evidence: Evidence, diffs: Sequence[float], sigma: float) -> float:
        """The noise of one pair's difference: sqrt 2 times the largest of the calibrated
        sigma, the incumbent's recent runs' (successive differences) and the pairs' own
        (from 3 pairs on, as pair_sigma)."""
        recent = successive_difference_sigma(evidence.incumbent[-self.RECENT_RUNS :]) or 0.0
        return pair_sigma(diffs, max(sigma, recent))


class Repeated(NoiseAware):
    """``repeats`` runs of the candidate, interleaved with as many fresh runs of the
    incumbent (C I C I ..., so load that comes and goes hits both), then one test of the
    candidate's runs against those incumbent runs alone: keep if significant (p < p_value,
    or bootstrap P(better) >= p_better) and the mean gain exceeds ``min_delta``. Robust and
    simple; costs 2 x repeats runs per candidate. Without pairs (a driver of its own) the
    test takes every run of the incumbent, however old."""

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
        if evidence.paired is None:
            if missing > 0:
                what = f"{len(cand)}/{self.repeats} runs"
                return Decision(Verdict.MEASURE, what, missing, missing)
            return self.judge(cand, inc, self.sigma(evidence, cand, inc))
        # C I C I ... C I: the k-th incumbent run right after the candidate's k-th.
        missing_inc = len(cand) + max(missing, 0) - len(evidence.paired)
        if missing > 0 or missing_inc > 0:
            return Decision(
                Verdict.MEASURE,
                f"{len(cand)}/{self.repeats} runs, {len(evidence.paired)} beside them",
                max(missing, 0),
                max(missing_inc, 0),
            )
        beside = [i for _, i in _oriented_pairs(evidence)]
        sigma = self.sigma(evidence, cand, inc)
        if not beside:
            return Decision(Verdict.DISCARD, ALL_FAILED)
        return self.judge(cand, beside, sigma, "the incumbent's runs beside them")

    def passes(self, cand: Sequence[float], inc: Sequence[float], sigma: float | None) -> bool:
        score, _ = significance(self.test, cand, inc, sigma)
        bar = self.config.p_better if self.test == "bootstrap" else 1.0 - self.p_value
        return score >= bar and mean(cand) - mean(inc) > self.config.min_delta

    def judge(
        self,
        cand: Sequence[float],
        inc: Sequence[float],
        sigma: float | None,
        against: str = "the incumbent's runs",
    ) -> Decision:
        _, what = significance(self.test, cand, inc, sigma)
        gain = mean(cand) - mean(inc)
        than = f"that of {len(inc)} of {against}"
        reason = f"mean of {len(cand)} runs {better_or_worse(gain, than)}, {what}"
        verdict = Verdict.KEEP if self.passes(cand, inc, sigma) else Verdict.DISCARD
        return Decision(verdict, reason)


class Sequential(Repeated):
    """Spend runs only where they can change the answer (a truncated sequential test on
    pairs).

    1. One run of the candidate: discard at once unless it beats the incumbent's mean by
       ``-reject_margin_sigma`` sigma (most neutral and worse ideas stop here). Drift can
       only make this screen discard a good idea or let a poor one through to step 2; it
       never keeps.
    2. Otherwise an incumbent run beside it, then one more candidate run at a time, each
       beside a fresh incumbent run (C I I C I C ...: every candidate run has its pair).
       Discard as soon as the pairs' mean gain falls below ``futility_fraction`` of the
       gain the final test will need (a z-test at ``p_value`` after ``repeats`` pairs). The
       bar is fixed in metric units, so it does not loosen as pairs accumulate the way a bar
       on z does: ideas too small to pass stop early, and the runs go to the ones that can.
    3. After ``repeats`` pairs, keep if the mean paired gain passes the z-test (default
       p < 0.03) on the noise of one pair: the larger of sqrt 2 x the calibrated sigma and
       the pairs' own spread (``test = "welch"`` or ``"bootstrap"``: that test, of the
       candidate's runs against the incumbent runs beside them). No keep before that:
       stopping at the first significant look records a mean biased upward, and the last
       runs pull it back toward the truth.

    Without pairs (``Evidence.paired is None``: a driver of its own) it is the rule before
    pairing: the incumbent re-measured up to ``incumbent_min`` runs, every candidate run
    against the incumbent's mean, a test of ``test`` after ``repeats`` runs.
    """

    name = "sequential"
    default_repeats = 7
    default_test = "z"
    default_p_value = 0.03
    # Without pairs: runs of the incumbent before judging (incumbent_min) and while the
    # candidate repeats (incumbent_runs): six at the default depth; a lower ``repeats`` (a
    # coarser policy for slow experiments) lowers them too, so a cheap preset stays cheap.
    incumbent_min = 6
    incumbent_runs = 6
    futility_fraction = 0.6

    def __init__(self, config: AcceptanceConfig | None = None, **fields: Any) -> None:
        super().__init__(config, **fields)
        if self.config.repeats is not None and self.config.repeats < self.incumbent_min:
            self.incumbent_min = self.incumbent_runs = self.config.repeats

    def decide(self, evidence: Evidence) -> Decision:
        if evidence.paired is None:
            return self.decide_unpaired(evidence)
        cand, inc = _oriented(evidence)
        sigma = self.sigma(evidence, cand, inc)
        n = len(cand)
        if n == 1 and not evidence.paired:
            screened = self.screen(cand[0] - mean(inc), sigma)
            if screened is not None:
                return screened
        if len(evidence.paired) < n:
            return _pair_partner(evidence)
        diffs = [c - i for c, i in _oriented_pairs(evidence)]
        s_d = pair_sigma(diffs, sigma)
        if n >= self.repeats:
            if self.test != "z":  # welch or bootstrap: the runs beside the candidate's only
                pairs = _oriented_pairs(evidence)
                if not pairs:
                    return Decision(Verdict.DISCARD, ALL_FAILED)
                beside = "the incumbent's runs beside them"
                return self.judge([c for c, _ in pairs], [i for _, i in pairs], sigma, beside)
            return self.judge_pairs(diffs, s_d)
        if diffs:
            d_gain = mean(diffs)
            futile = self.futility_fraction * self.final_pair_bar(s_d)
            if d_gain < futile and len(diffs) >= 2:
                return Decision(
                    Verdict.DISCARD,
                    f"fell back: mean {better_or_worse(d_gain, EACH)} over {len(diffs)} "
                    f"pairs, below {futile:.6g} "
                    f"({self.futility_fraction:g} of the final bar)",
                )
            what = f"mean gain {d_gain:.4g} over {len(diffs)} pairs"
        else:
            what = "no pair yet"
        return Decision(Verdict.MEASURE, f"promising: {what}", 1, 1)

    def screen(self, gain: float, sigma: float | None) -> Decision | None:
        """The first run against the incumbent's mean: a discard, a keep on a metric with
        no noise, or None (the candidate goes on to pairs)."""
        if not sigma:
            # No spread in any repeated run: a deterministic metric, where one run decides.
            verdict = Verdict.KEEP if gain > self.config.min_delta else Verdict.DISCARD
            return Decision(verdict, f"{better_or_worse(gain, INCUMBENT_MEAN)}, no noise")
        if gain < -self.config.reject_margin_sigma * sigma:
            return Decision(
                Verdict.DISCARD,
                f"first run {better_or_worse(gain, INCUMBENT_MEAN)} "
                f"(needs > {-self.config.reject_margin_sigma:g} sigma, sigma={sigma:.3g})",
            )
        return None

    def final_pair_bar(self, s_d: float) -> float:
        """The mean paired gain a z-test at ``p_value`` needs after ``repeats`` pairs whose
        differences have noise ``s_d``."""
        return normal_quantile(1.0 - self.p_value) * s_d / math.sqrt(self.repeats)

    def judge_pairs(self, diffs: Sequence[float], s_d: float) -> Decision:
        if not diffs:
            return Decision(Verdict.DISCARD, ALL_FAILED)
        d_gain = mean(diffs)
        # A pair's difference has noise s_d: the z-test of its mean over len(diffs) pairs.
        p = z_test_p(d_gain, s_d / math.sqrt(2.0), len(diffs), len(diffs))
        keep = p < self.p_value and d_gain > self.config.min_delta
        reason = (
            f"mean {better_or_worse(d_gain, EACH)} over {len(diffs)} pairs, "
            f"z-test p={p:.3g} (sigma of a pair {s_d:.3g})"
        )
        return Decision(Verdict.KEEP if keep else Verdict.DISCARD, reason)

    # -- without pairs: the rule before pairing --------------------------------------------
    def final_bar(self, sigma: float, incumbent_runs: int) -> float:
        """Without pairs: the mean gain a z-test at ``p_value`` needs after ``repeats`` runs
        of the candidate against ``incumbent_runs`` runs of the incumbent."""
        m = max(incumbent_runs, self.incumbent_runs)
        return normal_quantile(1.0 - self.p_value) * sigma * math.sqrt(1.0 / self.repeats + 1.0 / m)

    def decide_unpaired(self, evidence: Evidence) -> Decision:
        cand, inc = _oriented(evidence)
        if len(inc) < self.incumbent_min:
            more = self.incumbent_min - len(inc)
            return Decision(Verdict.MEASURE, f"re-measure the incumbent ({len(inc)} runs)", 0, more)
        sigma = self.sigma(evidence, cand, inc)
        n = len(cand)
        if n >= self.repeats:
            return self.judge(cand, inc, sigma)
        gain = mean(cand) - mean(inc)
        if not sigma or n == 1:
            screened = self.screen(gain, sigma)
            if screened is not None:
                return screened
        assert sigma  # the screen decides where there is no noise
        z = gain / (sigma * math.sqrt(1.0 / n + 1.0 / len(inc)))
        futile = self.futility_fraction * self.final_bar(sigma, len(inc))
        if n >= 2 and gain < futile:
            return Decision(
                Verdict.DISCARD,
                f"fell back: mean {better_or_worse(gain, INCUMBENT_MEAN)} after {n} runs, "
                f"below {futile:.6g} ({self.futility_fraction:g} of the final bar)",
            )
        more_inc = 1 if len(inc) < max(n + 1, self.incumbent_runs) else 0
        return Decision(Verdict.MEASURE, f"promising: z={z:.2f} after {n} runs", 1, more_inc)
