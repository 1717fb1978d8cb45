"""Threshold, repeated and sequential acceptance: single decisions and whole streams."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

from autoresearch._config import AcceptanceConfig
from autoresearch._errors import ConfigError
from autoresearch.acceptance import POLICIES
from autoresearch.acceptance._base import (
    Acceptance,
    Evidence,
    Greedy,
    Verdict,
    make_acceptance,
)
from autoresearch.acceptance._policies import (
    DEFAULT_CALIBRATION_RUNS,
    Repeated,
    Sequential,
    Threshold,
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
    assert seq.runs_per_cand < 2.5 * greedy.runs_per_cand


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
    def make_acceptance(self) -> Acceptance:
        return Threshold(z=2.0)


class TestRepeatedContract(AcceptanceContract):
    def make_acceptance(self) -> Acceptance:
        return Repeated(repeats=3)


class TestSequentialContract(AcceptanceContract):
    def make_acceptance(self) -> Acceptance:
        return Sequential()


class TestSequentialWelchContract(AcceptanceContract):
    def make_acceptance(self) -> Acceptance:
        return Sequential(test="welch", repeats=5)
