"""Threshold, repeated and sequential acceptance: single decisions and whole streams.

``ev`` builds evidence without pairs (``paired=None``: a caller that takes none, where each
policy keeps its rule from before pairing); ``evp`` builds the loop's evidence, with the
incumbent runs taken beside the candidate's."""

from __future__ import annotations

import importlib.util
import math
import random
import statistics
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from autoresearch._config import AcceptanceConfig
from autoresearch._errors import ConfigError
from autoresearch.acceptance import POLICIES
from autoresearch.acceptance._base import (
    Acceptance,
    Decision,
    Evidence,
    Greedy,
    Verdict,
    better_or_worse,
    make_acceptance,
)
from autoresearch.acceptance._policies import (
    DEFAULT_CALIBRATION_RUNS,
    Repeated,
    Sequential,
    Threshold,
    pair_sigma,
    significance,
)
from autoresearch.testing import AcceptanceContract

SIGMA = 0.02
INC = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98]  # six runs, mean 1.0


def ev(
    cand: list[float],
    inc: list[float] = INC,
    direction: str = "maximize",
    sigma: float | None = SIGMA,
) -> Evidence:
    return Evidence(tuple(cand), tuple(inc), direction, sigma)


def evp(
    cand: list[float],
    paired: list[float],
    inc: list[float] = INC,
    direction: str = "maximize",
    sigma: float | None = SIGMA,
) -> Evidence:
    return Evidence(tuple(cand), tuple(inc), direction, sigma, tuple(paired))


def flip(values: list[float]) -> list[float]:
    # The same situation in a minimized metric.
    return [2.0 - v for v in values]


@pytest.mark.parametrize("name", ["threshold", "repeated", "sequential"])
def test_registry_builds_each_policy(name: str) -> None:
    policy = make_acceptance(AcceptanceConfig(policy=name))
    assert policy.name == name
    assert isinstance(policy, POLICIES.get(name, "acceptance.policy"))


def test_a_policy_is_built_from_keyword_fields_and_names_a_misspelt_one() -> None:
    policy = Sequential(z=3.0, repeats=4)
    assert (policy.config.policy, policy.config.z, policy.repeats) == ("sequential", 3.0, 4)
    with pytest.raises(ConfigError, match="repeets"):
        Sequential(repeets=4)


def test_calibration_schedule() -> None:
    default = Sequential(AcceptanceConfig())
    assert default.calibration_runs(0) == DEFAULT_CALIBRATION_RUNS
    assert [default.calibration_runs(i) for i in range(1, 30)] == [0] * 29
    every = Threshold(AcceptanceConfig(calibration_runs=3, calibrate_every=10))
    assert [i for i in range(0, 35) if every.calibration_runs(i)] == [0, 10, 20, 30]
    assert every.calibration_runs(10) == 3


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_threshold_bar_is_z_sigma(direction: str) -> None:
    policy = Threshold(AcceptanceConfig(z=2.0))
    orient = (lambda v: v) if direction == "maximize" else flip
    assert policy.decide(ev(orient([1.05]), orient(INC), direction)).verdict is Verdict.KEEP
    assert policy.decide(ev(orient([1.03]), orient(INC), direction)).verdict is Verdict.DISCARD
    assert policy.decide(ev(orient([0.9]), orient(INC), direction)).verdict is Verdict.DISCARD


def test_threshold_min_delta_wins_over_a_small_sigma_and_works_without_sigma() -> None:
    policy = Threshold(AcceptanceConfig(z=2.0, min_delta=0.1))
    assert policy.decide(ev([1.08])).verdict is Verdict.DISCARD
    decision = policy.decide(ev([1.2], inc=[1.0], sigma=None))
    assert decision.verdict is Verdict.KEEP
    assert "no sigma" in decision.reason


def test_repeated_asks_for_interleaved_runs_then_tests() -> None:
    policy = Repeated(AcceptanceConfig(repeats=3))
    assert policy.max_runs_per_candidate == 3
    first = policy.decide(ev([1.05]))
    assert (first.verdict, first.more_candidate, first.more_incumbent) == (Verdict.MEASURE, 2, 2)
    assert policy.decide(ev([1.06, 1.05, 1.07])).verdict is Verdict.KEEP
    assert policy.decide(ev([1.0, 1.01, 0.99])).verdict is Verdict.DISCARD


def test_repeated_defaults_and_overrides() -> None:
    default = Repeated(AcceptanceConfig())
    assert (default.repeats, default.test, default.p_value) == (3, "welch", 0.05)
    seq = Sequential(AcceptanceConfig())
    assert (seq.repeats, seq.test, seq.p_value) == (7, "z", 0.03)
    mine = Sequential(AcceptanceConfig(repeats=4, test="welch", p_value=0.01))
    assert (mine.repeats, mine.test, mine.p_value) == (4, "welch", 0.01)


def test_repeated_bootstrap_and_min_delta() -> None:
    boot = Repeated(AcceptanceConfig(test="bootstrap", p_better=0.95))
    assert boot.decide(ev([1.06, 1.07, 1.08])).verdict is Verdict.KEEP
    assert "bootstrap" in boot.decide(ev([1.06, 1.07, 1.08])).reason
    big_delta = Repeated(AcceptanceConfig(min_delta=0.2))
    assert big_delta.decide(ev([1.06, 1.07, 1.08])).verdict is Verdict.DISCARD


def test_significance_tests_agree_on_direction_and_handle_too_few_runs() -> None:
    for test in ("welch", "bootstrap", "z"):
        better, _ = significance(test, [1.05, 1.06, 1.04], INC, SIGMA)
        worse, _ = significance(test, [0.95, 0.96, 0.94], INC, SIGMA)
        assert better > 0.95 > worse
    assert significance("welch", [1.5], INC, SIGMA)[0] == 0.0
    assert significance("z", [1.5], INC, None)[0] == 0.0


def test_sequential_remeasures_a_young_incumbent_first() -> None:
    d = Sequential(AcceptanceConfig()).decide(ev([1.05], inc=[1.0, 1.01]))
    assert (d.verdict, d.more_candidate, d.more_incumbent) == (Verdict.MEASURE, 0, 4)


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_sequential_rejects_a_first_run_without_a_lead(direction: str) -> None:
    orient = (lambda v: v) if direction == "maximize" else flip
    policy = Sequential(AcceptanceConfig())  # needs a lead of 0.75 sigma = 0.015
    d = policy.decide(ev(orient([1.005]), orient(INC), direction))
    assert d.verdict is Verdict.DISCARD
    assert "first run" in d.reason
    more = policy.decide(ev(orient([1.02]), orient(INC), direction))
    assert (more.verdict, more.more_candidate) == (Verdict.MEASURE, 1)


def test_sequential_margin_is_configurable() -> None:
    lenient = Sequential(AcceptanceConfig(reject_margin_sigma=1.0))
    assert lenient.decide(ev([0.99])).verdict is Verdict.MEASURE
    assert lenient.decide(ev([0.97])).verdict is Verdict.DISCARD


def test_sequential_gives_up_when_the_evidence_falls_back() -> None:
    d = Sequential(AcceptanceConfig()).decide(ev([1.02, 0.98]))
    assert d.verdict is Verdict.DISCARD
    assert "fell back" in d.reason


def test_sequential_keeps_only_after_all_runs() -> None:
    policy = Sequential(AcceptanceConfig())
    strong = [1.06, 1.05, 1.07, 1.06, 1.05, 1.06, 1.05]
    for n in range(1, 7):
        d = policy.decide(ev(strong[:n]))
        assert d.verdict is Verdict.MEASURE, n
    assert policy.decide(ev(strong)).verdict is Verdict.KEEP
    marginal = [1.02, 1.015, 1.01, 1.02, 1.0, 1.02, 1.015]  # z below the bar after 7 runs
    assert policy.decide(ev(marginal)).verdict is Verdict.DISCARD


def test_sequential_futility_bar_is_a_fraction_of_the_final_bar() -> None:
    policy = Sequential(AcceptanceConfig())
    # z-test at p=0.03 after 7 runs against 6: 1.881 * 0.02 * sqrt(1/7 + 1/6) = 0.0209.
    bar = policy.final_bar(SIGMA, len(INC))
    assert bar == pytest.approx(0.02093, abs=1e-4)
    futile = policy.futility_fraction * bar
    assert futile > 0.01  # a lead of half a sigma after 2 runs is not enough
    assert policy.decide(ev([1.02, 1.0])).verdict is Verdict.DISCARD
    assert policy.decide(ev([1.03, 1.02])).verdict is Verdict.MEASURE  # gain 0.025
    # The bar stays put in metric units: a lead that is z = 1 after 5 runs no longer
    # earns more runs, since it is too small to pass the final test.
    lagging = [1.03, 1.02, 1.005, 1.0, 1.005]  # gain 0.012 < 0.6 * 0.0209
    d = policy.decide(ev(lagging))
    assert (d.verdict, "fell back" in d.reason) == (Verdict.DISCARD, True)
    # A better-measured incumbent lowers the bar.
    assert policy.final_bar(SIGMA, 12) < bar


def test_sequential_pairs_incumbent_runs_until_it_has_enough() -> None:
    class Hungry(Sequential):
        incumbent_runs = 8

    assert Sequential(AcceptanceConfig()).decide(ev([1.05, 1.06])).more_incumbent == 0
    assert Hungry(AcceptanceConfig()).decide(ev([1.05, 1.06])).more_incumbent == 1
    assert Hungry(AcceptanceConfig()).decide(ev([1.05, 1.06], inc=INC * 2)).more_incumbent == 0


def test_sequential_on_a_deterministic_metric_decides_from_one_run() -> None:
    policy = Sequential(AcceptanceConfig(min_delta=0.01))
    assert policy.decide(ev([1.05], inc=[1.0] * 6, sigma=0.0)).verdict is Verdict.KEEP
    assert policy.decide(ev([1.005], inc=[1.0] * 6, sigma=None)).verdict is Verdict.DISCARD


def test_policies_are_pure() -> None:
    policy: Acceptance = Sequential(AcceptanceConfig())
    e = ev([1.05, 1.06, 1.04])
    assert policy.decide(e) == policy.decide(e)


# -- whole streams through the benchmark's loop driver -----------------------------------------


def _benchmark() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "acceptance.py"
    spec = importlib.util.spec_from_file_location("acceptance_benchmark", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_driver_never_runs_a_candidate_past_its_limit() -> None:
    bench = _benchmark()
    changes = bench.make_stream(random.Random(1), 30)
    res = bench.simulate(Sequential(AcceptanceConfig()), changes, random.Random(2))
    # 1 baseline + calibration + at most (7 candidate + 7 incumbent) runs per candidate.
    assert res.runs <= 1 + DEFAULT_CALIBRATION_RUNS + 30 * 14
    assert res.keeps == len(res.kept_changes)


def test_sequential_beats_greedy_on_false_discoveries() -> None:
    bench = _benchmark()
    greedy = bench.evaluate(bench.POLICIES["greedy"], 25, seed=5)
    seq = bench.evaluate(bench.POLICIES["sequential"], 25, seed=5)
    assert greedy.fdr > 0.25
    assert seq.fdr < 0.1
    assert seq.aa_keeps < greedy.aa_keeps / 4
    assert abs(seq.rep_minus_true_sigma) < greedy.rep_minus_true_sigma / 2
    # Pairing costs an incumbent run beside every candidate run past the first.
    assert seq.runs_per_cand < 3.5 * greedy.runs_per_cand


def test_sequential_with_fewer_repeats_needs_fewer_incumbent_runs() -> None:
    cheap = Sequential(AcceptanceConfig(repeats=3))
    # Three incumbent runs (a baseline and two calibration runs) are enough to judge.
    decision = cheap.decide(ev([1.08], inc=[1.0, 1.01, 0.99]))
    assert decision.more_incumbent == 0
    default = Sequential(AcceptanceConfig())
    assert default.decide(ev([1.08], inc=[1.0, 1.01, 0.99])).more_incumbent == 3


# -- the Acceptance contract, for every built-in policy ------------------------------------------


class TestGreedyContract(AcceptanceContract):
    def make_acceptance(self) -> Acceptance:
        return Greedy()


class TestThresholdContract(AcceptanceContract):
    holds_under_drift = True

    def make_acceptance(self) -> Acceptance:
        return Threshold(z=2.0)


class TestRepeatedContract(AcceptanceContract):
    holds_under_drift = True

    def make_acceptance(self) -> Acceptance:
        return Repeated(repeats=3)


class TestSequentialContract(AcceptanceContract):
    holds_under_drift = True

    def make_acceptance(self) -> Acceptance:
        return Sequential()


class TestSequentialWelchContract(AcceptanceContract):
    holds_under_drift = True

    def make_acceptance(self) -> Acceptance:
        return Sequential(test="welch", repeats=5)


class TestSequentialWithoutPairsFailsTheDriftCheck(AcceptanceContract):
    holds_under_drift = True

    def make_acceptance(self) -> Acceptance:
        return Unpaired()

    def test_a_drift_of_the_load_is_not_a_keep(self) -> None:
        # The check has teeth: the rule before pairing (and greedy) keep a drift.
        with pytest.raises(AssertionError, match="was kept in"):
            super().test_a_drift_of_the_load_is_not_a_keep()


class Unpaired(Sequential):
    """Sequential handed no pairs, whatever the loop took: the rule before pairing."""

    def decide(self, evidence: Evidence) -> Decision:
        return super().decide(replace(evidence, paired=None))


def test_greedy_fails_the_drift_check_too() -> None:
    class GreedyDrift(AcceptanceContract):
        holds_under_drift = True

        def make_acceptance(self) -> Acceptance:
            return Greedy()

    with pytest.raises(AssertionError, match="was kept in"):
        GreedyDrift().test_a_drift_of_the_load_is_not_a_keep()


# -- pairs: every keep rests on incumbent runs taken beside the candidate's ---------------------

# A load that came after the incumbent's six runs: every run now reads 0.1 (5 sigma) higher,
# the candidate's and the incumbent's alike. The candidate is the incumbent's code.
DRIFT = 0.1
JITTER = [0.004, -0.006, 0.002, 0.0, -0.003, 0.005, -0.001]


def test_evidence_pairs_skip_failed_incumbent_runs_and_none_means_no_pairs() -> None:
    e = evp([1.0, 1.1, 1.2], [0.9, math.nan, 1.1])
    assert e.pairs() == [(1.0, 0.9), (1.2, 1.1)]
    assert ev([1.0]).paired is None and ev([1.0]).pairs() == []
    assert evp([1.0], []).pairs() == []


def test_sequential_screens_on_the_mean_then_takes_the_incumbent_run_beside_it() -> None:
    policy = Sequential(AcceptanceConfig())
    # A first run without a lead over the incumbent's mean stops here, with or without pairs.
    assert policy.decide(evp([1.005], [])).verdict is Verdict.DISCARD
    d = policy.decide(evp([1.02], []))
    assert (d.verdict, d.more_candidate, d.more_incumbent) == (Verdict.MEASURE, 0, 1)
    assert "beside" in d.reason
    # No re-measuring of a young incumbent: the mean only screens.
    young = policy.decide(evp([1.05], [], inc=[1.0, 1.01]))
    assert (young.more_candidate, young.more_incumbent) == (0, 1)
    # Then a candidate run and its partner at a time.
    more = policy.decide(evp([1.05], [1.0]))
    assert (more.verdict, more.more_candidate, more.more_incumbent) == (Verdict.MEASURE, 1, 1)


def test_sequential_does_not_keep_a_drift_that_the_rule_before_pairing_kept() -> None:
    policy = Sequential(AcceptanceConfig())
    cand = [1.0 + DRIFT + j for j in JITTER]
    beside = [1.0 + DRIFT - j for j in JITTER]
    # Against the incumbent's older runs the drift is a 5-sigma gain: the old rule keeps it.
    assert policy.decide(ev(cand)).verdict is Verdict.KEEP
    d = policy.decide(evp(cand, beside))
    assert d.verdict is Verdict.DISCARD, d.reason
    assert "beside" in d.reason and "7 pairs" in d.reason
    # A real gain under the same load is still kept: the pairs carry it.
    gained = [c + 0.05 for c in cand]
    assert policy.decide(evp(gained, beside)).verdict is Verdict.KEEP


def test_sequential_futility_and_final_test_are_on_the_pairs() -> None:
    policy = Sequential(AcceptanceConfig())
    # Far above the incumbent's mean, level with the runs beside it: falls back after 2.
    d = policy.decide(evp([1.1, 1.1], [1.1, 1.1]))
    assert (d.verdict, "fell back" in d.reason) == (Verdict.DISCARD, True)
    # The final bar: z at p=0.03 over 7 pairs, a pair's noise sqrt 2 sigma.
    bar = policy.final_pair_bar(math.sqrt(2) * SIGMA)
    assert bar == pytest.approx(1.881 * math.sqrt(2) * SIGMA / math.sqrt(7), rel=1e-3)


def test_a_pair_noise_is_never_below_what_the_pairs_show() -> None:
    # Calibrated at 0.005 under a light load, the pairs now spread by ~0.05: a mean paired
    # gain of 0.02 is within their noise, and a z-test on the calibration would keep it.
    diffs = [0.07, -0.03, 0.08, -0.04, 0.06, -0.02, 0.02]
    assert pair_sigma(diffs, 0.005) == pytest.approx(statistics.stdev(diffs))
    assert pair_sigma(diffs[:2], 0.005) == pytest.approx(math.sqrt(2) * 0.005)  # too few
    beside = [1.0] * 7
    cand = [1.0 + x for x in diffs]
    policy = Sequential(AcceptanceConfig())
    assert policy.decide(evp(cand, beside, sigma=0.005)).verdict is Verdict.DISCARD
    assert policy.decide(evp(cand, beside, sigma=0.005)).reason.startswith("mean 0.02 better")


def test_sequential_judges_the_last_run_with_its_partner_and_skips_failed_ones() -> None:
    policy = Sequential(AcceptanceConfig())
    strong = [1.06, 1.05, 1.07, 1.06, 1.05, 1.06, 1.05]
    last = policy.decide(evp(strong, [1.0] * 6))
    assert (last.verdict, last.more_candidate, last.more_incumbent) == (Verdict.MEASURE, 0, 1)
    assert policy.decide(evp(strong, [1.0] * 7)).verdict is Verdict.KEEP
    holes = policy.decide(evp(strong, [1.0, math.nan] * 3 + [1.0]))
    assert holes.verdict is Verdict.KEEP and "4 pairs" in holes.reason
    welch = Sequential(AcceptanceConfig(test="welch"))
    d = welch.decide(evp(strong, [1.0 + j for j in JITTER]))
    assert d.verdict is Verdict.KEEP and "welch" in d.reason and "beside" in d.reason


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_threshold_screens_on_one_run_then_confirms_on_fresh_pairs(direction: str) -> None:
    policy = Threshold(AcceptanceConfig(z=2.0))
    orient = (lambda v: v) if direction == "maximize" else flip

    def decide(cand: list[float], paired: list[float]) -> Decision:
        inc = orient(INC + paired)  # the loop's incumbent runs include those beside
        return policy.decide(evp(orient(cand), orient(paired), inc, direction))

    # The screen: 0.75 z sigma = 0.03 over the incumbent's mean, from one run, no pair.
    assert decide([1.025], []).verdict is Verdict.DISCARD
    ask = decide([1.05], [])
    assert (ask.verdict, ask.more_candidate, ask.more_incumbent) == (Verdict.MEASURE, 0, 1)
    # The run beside the screened one: the candidate's run must beat it.
    drifted = decide([1.05], [1.06])  # the load moved both: the screen's gain was the load
    assert drifted.verdict is Verdict.DISCARD and "beside" in drifted.reason
    failed = decide([1.05], [math.nan])
    assert failed.verdict is Verdict.DISCARD and "failed" in failed.reason
    more = decide([1.05], [1.0])
    assert (more.verdict, more.more_candidate, more.more_incumbent) == (Verdict.MEASURE, 1, 1)
    # Then fresh pairs, one at a time; a fresh mean that is no gain stops it.
    fell = decide([1.05, 1.0], [1.0, 1.01])
    assert fell.verdict is Verdict.DISCARD and "fell back" in fell.reason
    gain = [0.05, 0.04, 0.06, 0.05]
    beside = [1.0, 1.01, 0.99, 1.0, 1.01]
    cand = [1.05] + [i + g for i, g in zip(beside[1:], gain, strict=True)]
    assert decide(cand[:4], beside[:4]).verdict is Verdict.MEASURE  # 3 of 4 fresh pairs
    kept = decide(cand, beside)
    assert kept.verdict is Verdict.KEEP and "4 fresh pairs" in kept.reason
    # Without pairs (a caller that takes none), one run against the mean at z sigma, as before.
    assert policy.decide(ev(orient([1.05]), orient(INC), direction)).verdict is Verdict.KEEP
    assert policy.decide(ev(orient([1.035]), orient(INC), direction)).verdict is Verdict.DISCARD


def old_threshold_keeps(e: Evidence, z: float = 2.0) -> bool:
    """The rule before this one: the first run beats the incumbent's mean and the one
    incumbent run beside it, each by z times the calibrated sigma."""
    assert e.noise_sigma is not None and e.paired
    bar = z * e.noise_sigma
    return (
        e.candidate[0] - statistics.fmean(e.incumbent) > bar and e.candidate[0] - e.paired[0] > bar
    )


# The mistune case: sigma was calibrated at 0.02 under a light load; the load then came back,
# lifting every run and making the noise about 2.5x. The candidate is the incumbent's code.
LOADED_BESIDE = [1.05, 1.00, 1.07, 0.99, 1.06]  # the incumbent runs beside the candidate's
LOADED_CAND = [1.10, 1.07, 1.07, 1.05, 1.07]  # fresh pairs: +0.07, 0, +0.06, +0.01


def test_threshold_does_not_keep_a_noise_that_grew_since_calibration() -> None:
    policy = Threshold(AcceptanceConfig(z=2.0))
    e = evp(LOADED_CAND, LOADED_BESIDE, INC + LOADED_BESIDE)
    # The first run beats the mean by 0.10 and the run beside it by 0.05, both above 2 x 0.02.
    assert old_threshold_keeps(e)
    # The calibrated sigma alone would keep it too: a mean fresh gain of 0.035 over a bar of
    # 2 sqrt(2) 0.02 / sqrt(4) = 0.028.
    fresh = [c - i for c, i in zip(LOADED_CAND[1:], LOADED_BESIDE[1:], strict=True)]
    assert statistics.fmean(fresh) > 2.0 * math.sqrt(2.0) * SIGMA / 2.0
    d = policy.decide(e)
    # The incumbent's recent runs swing by ~0.06: sigma ~0.043 by successive differences.
    assert d.verdict is Verdict.DISCARD, d.reason
    assert "sigma of a pair 0.06" in d.reason
    # A real gain under the same load is still kept: 0.12 over every run beside it.
    gained = [LOADED_CAND[0]] + [i + 0.12 for i in LOADED_BESIDE[1:]]
    kept = policy.decide(evp(gained, LOADED_BESIDE, INC + LOADED_BESIDE))
    assert kept.verdict is Verdict.KEEP, kept.reason


def test_threshold_holds_false_keeps_on_the_drifting_stream() -> None:
    bench = _benchmark()

    class OldThreshold(Threshold):
        max_runs_per_candidate = 1

        def decide(self, evidence: Evidence) -> Decision:
            if evidence.paired is None or evidence.noise_sigma is None:
                return super().decide(evidence)
            gain = evidence.candidate[0] - statistics.fmean(evidence.incumbent)
            if gain <= self.config.z * evidence.noise_sigma:
                return Decision(Verdict.DISCARD, "screen")
            if not evidence.paired:
                return Decision(Verdict.MEASURE, "partner", 0, 1)
            keep = old_threshold_keeps(evidence, self.config.z)
            return Decision(Verdict.KEEP if keep else Verdict.DISCARD, "pair")

    def make_old() -> Acceptance:
        return OldThreshold(AcceptanceConfig(policy="threshold"))

    old = bench.evaluate(make_old, 25, seed=5, drift=True)
    new = bench.evaluate(bench.POLICIES["threshold"], 25, seed=5, drift=True)
    assert old.fdr > 0.15
    assert new.fdr < old.fdr / 2
    assert new.aa_keeps < old.aa_keeps / 2
    # Still the cheap rule: most candidates cost one run.
    assert new.runs_per_cand < 2.0
    stationary = bench.evaluate(bench.POLICIES["threshold"], 25, seed=5)
    assert stationary.fdr < 0.05 and stationary.runs_per_cand < 2.0


def test_repeated_tests_against_the_incumbent_runs_beside_the_candidates() -> None:
    policy = Repeated(AcceptanceConfig(repeats=3))
    first = policy.decide(evp([1.05], []))
    # C I C I C I: three pairs, the k-th incumbent run right after the candidate's k-th.
    assert (first.verdict, first.more_candidate, first.more_incumbent) == (Verdict.MEASURE, 2, 3)
    cand = [1.0 + DRIFT + j for j in JITTER[:3]]
    beside = [1.0 + DRIFT - j for j in JITTER[:3]]
    assert policy.decide(ev(cand)).verdict is Verdict.KEEP  # the old rule: every incumbent run
    d = policy.decide(evp(cand, beside))
    assert d.verdict is Verdict.DISCARD and "3 of the incumbent's runs beside them" in d.reason
    assert policy.decide(evp([c + 0.05 for c in cand], beside)).verdict is Verdict.KEEP


def test_a_gain_of_exactly_zero_reads_the_same_as_the_incumbent() -> None:
    assert better_or_worse(0.0) == "no change"
    assert better_or_worse(0.0, "the incumbent") == "the same as the incumbent"
    assert better_or_worse(0.5, "the incumbent") == "0.5 better than the incumbent"
    reasons = [
        Greedy().decide(ev([1.0], inc=[1.0])).reason,
        Threshold().decide(ev([1.0], inc=[1.0, 1.0])).reason,
        Sequential(reject_margin_sigma=0.5).decide(ev([1.0], inc=[1.0] * 6)).reason,
        Sequential().decide(ev([1.0], inc=[1.0] * 6, sigma=0.0)).reason,
        Sequential().decide(evp([1.05] * 2, [1.05] * 2)).reason,  # fell back on the pairs
        Sequential().decide(evp([1.05] * 7, [1.05] * 7)).reason,  # the final test
        Repeated().decide(evp([1.05] * 3, [1.05] * 3)).reason,
        Threshold().decide(evp([1.05], [1.05])).reason,
    ]
    for reason in reasons:
        assert "no change than" not in reason, reason
    assert reasons[0].startswith("the same as the incumbent")
    assert "mean the same as the incumbent run beside each" in reasons[5]
    assert "the same as that of 3 of the incumbent's runs beside them" in reasons[6]


def test_successive_differences_see_the_noise_not_a_drifting_mean() -> None:
    from autoresearch.acceptance._stats import estimate_sigma, successive_difference_sigma

    # A step in the mean halfway (a load that came): the sample spread counts the step as
    # noise, the successive differences count it once.
    runs = [1.0 + j for j in JITTER] + [1.1 + j for j in JITTER]
    stepped = successive_difference_sigma(runs)
    assert stepped is not None and stepped < 0.03 < (estimate_sigma(runs) or 0.0)
    assert successive_difference_sigma([1.0, 1.0 + 2 * SIGMA]) == pytest.approx(
        math.sqrt(2) * SIGMA
    )
    assert successive_difference_sigma([1.0, math.nan, 1.04]) == pytest.approx(math.sqrt(2) * SIGMA)
    assert successive_difference_sigma([1.0]) is None
