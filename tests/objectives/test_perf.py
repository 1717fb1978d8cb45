"""The `perf` objectives (one run -> one rate or time) and the `paired` policy they are
decided by (median of per-pair gains, a sign-test interval, min_gain)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from autoresearch import AcceptanceConfig, ConfigError, MetricMissing, RunResult
from autoresearch.acceptance import Paired
from autoresearch.acceptance._base import Evidence, Verdict
from autoresearch.objectives.perf import WALL, Latency, Throughput


def run_with(tmp_path: Path, command_out: str, eval_out: str | None = None) -> RunResult:
    log = tmp_path / "run.log"
    log.write_text(command_out)
    eval_log = None
    if eval_out is not None:
        eval_log = tmp_path / "eval.log"
        eval_log.write_text(eval_out)
    return RunResult(
        workdir=tmp_path,
        log_path=log,
        exit_code=0,
        wall_s=2.5,
        peak_memory_mb=1.0,
        seed=0,
        eval_log_path=eval_log,
        eval_exit_code=0 if eval_out is not None else None,
    )


def test_throughput_reads_the_trusted_output_only(tmp_path: Path) -> None:
    # The candidate's command prints a huge rate; the fixed evaluator's figure is the one used.
    run = run_with(tmp_path, "---\nsteps_per_s: 1e9\n", "---\nsteps_per_s: 812.5\nhash_ok: 1\n")
    m = Throughput(secondary=["hash_ok"]).measure(run)
    assert m.primary == 812.5
    assert m.secondary == {"hash_ok": 1.0, WALL: 2.5}


def test_latency_on_the_sandbox_clock_ignores_printed_times(tmp_path: Path) -> None:
    run = run_with(tmp_path, "METRIC wall_s=0.001\n")
    assert Latency().measure(run).primary == 2.5


@pytest.mark.parametrize(
    "out", ["nothing here\n", "---\nsteps_per_s: 0\n", "---\nsteps_per_s: nan\n"]
)
def test_a_missing_or_impossible_rate_is_no_measurement(tmp_path: Path, out: str) -> None:
    with pytest.raises(MetricMissing):
        Throughput().measure(run_with(tmp_path, "", out))


def test_the_objectives_gate_checks_required_values_and_names_the_machine(tmp_path: Path) -> None:
    objective = Throughput(require={"trajectory_ok": 1})
    bad = objective.gate(run_with(tmp_path, "", "---\nsteps_per_s: 5\ntrajectory_ok: 0\n"))
    assert not bad.passed and "trajectory_ok is 0.0" in bad.reason
    good = objective.gate(run_with(tmp_path, "", "---\nsteps_per_s: 5\ntrajectory_ok: 1\n"))
    assert good.passed and "Python" in good.reason and "CPU" in good.reason


def paired(min_gain: float = 0.01, repeats: int | None = None) -> Paired:
    return Paired(AcceptanceConfig(policy="paired", min_gain=min_gain, repeats=repeats))


def test_paired_asks_for_side_by_side_runs_until_it_has_its_pairs() -> None:
    policy = paired()
    first = policy.decide(Evidence([100.0], [100.0] * 9, "maximize", 1.0, paired=[]))
    assert first.verdict is Verdict.MEASURE
    assert (first.more_candidate, first.more_incumbent) == (5, 6)
    # Old incumbent runs (taken minutes ago) never stand in for pairs.
    half = policy.decide(Evidence([100.0] * 6, [90.0] * 20, "maximize", 1.0, paired=[99.0]))
    assert half.verdict is Verdict.MEASURE and half.more_incumbent == 5


def test_paired_keeps_a_real_gain_under_drift_and_not_a_no_op() -> None:
    rng = random.Random(7)
    # The machine's speed drifts by 2x across the pairs; each pair shares its moment's load.
    load = [1.0 + 0.15 * k for k in range(6)]
    faster = [(130.0 / f * rng.uniform(0.98, 1.02), 100.0 / f) for f in load]
    same = [(100.0 / f * rng.uniform(0.97, 1.03), 100.0 / f) for f in load]
    policy = paired(min_gain=0.02)

    def decide(pairs: list[tuple[float, float]]) -> Verdict:
        cand, inc = zip(*pairs, strict=True)
        return policy.decide(Evidence(list(cand), [], "maximize", None, paired=list(inc))).verdict

    assert decide(faster) is Verdict.KEEP
    assert decide(same) is Verdict.DISCARD
    # Times, smaller is better: the same rule through ratios of the incumbent's over ours.
    times = [(1 / c, 1 / i) for c, i in faster]
    cand, inc = zip(*times, strict=True)
    verdict = policy.decide(Evidence(list(cand), [], "minimize", None, paired=list(inc))).verdict
    assert verdict is Verdict.KEEP


def test_a_gain_below_min_gain_or_with_an_interval_reaching_zero_is_discarded() -> None:
    policy = paired(min_gain=0.10)
    small = policy.decide(Evidence([105.0] * 6, [], "maximize", None, paired=[100.0] * 6))
    assert small.verdict is Verdict.DISCARD and "min_gain 10.00%" in small.reason
    # Median +20%, but one pair in six is a loss: the interval's low end is below zero.
    mixed = [120.0, 120.0, 120.0, 120.0, 120.0, 90.0]
    wide = paired(min_gain=0.0).decide(Evidence(mixed, [], "maximize", None, paired=[100.0] * 6))
    assert wide.verdict is Verdict.DISCARD and "interval [-10.00%" in wide.reason


def test_failed_incumbent_runs_leave_too_few_pairs_to_keep() -> None:
    nan = float("nan")
    got = paired().decide(
        Evidence([200.0] * 6, [], "maximize", None, paired=[100.0, nan, 100.0, nan, 100.0, nan])
    )
    assert got.verdict is Verdict.DISCARD and "only 3 pairs" in got.reason


def test_fewer_than_six_pairs_is_a_config_error() -> None:
    # With 5 pairs no sign-test interval reaches 95%: nothing could ever be kept.
    with pytest.raises(ConfigError, match="at least 6 pairs"):
        paired(repeats=5)
