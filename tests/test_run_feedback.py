"""What a person sees of a run: why a baseline failed, progress on the ``autoresearch``
logger and "run" events (repeat k of n), figures that agree (seeds and logs of calibration
runs, "better"/"worse" reasons, the results.tsv column, a kept commit's message)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import commit_all, git, open_ledger, set_x

from autoresearch import (
    BaselineFailed,
    Event,
    GateResult,
    Loop,
    Measurement,
    Objective,
    RunResult,
    parse_summary,
)
from autoresearch.acceptance import Greedy, Repeated, Sequential
from autoresearch.acceptance._base import Evidence, Verdict
from autoresearch.execution import LocalSandbox
from autoresearch.testing import FakeRun, FakeSandbox, Scripted, make_toy_domain, toy_run

TRACEBACK = (
    "loading data\n"
    "Traceback (most recent call last):\n"
    '  File "train.py", line 3, in <module>\n'
    "    1 / 0\n"
    "ZeroDivisionError: division by zero\n"
)


def test_a_failed_baseline_quotes_the_traceback_s_last_line(toy: Path) -> None:
    crashing = FakeSandbox(lambda spec: FakeRun.crash(TRACEBACK))
    with pytest.raises(BaselineFailed) as info:
        Loop.from_dir(toy, proposer=Scripted([]), sandbox=crashing).run()
    text = str(info.value)
    assert "exit code 1" in text and "ZeroDivisionError: division by zero" in text
    assert "1 / 0" not in text  # the exception, not the whole traceback


def test_a_failed_baseline_quotes_the_domain_s_own_message(tmp_path: Path) -> None:
    why = "the preset needs a CUDA GPU; use --preset cpu"
    d = make_toy_domain(tmp_path / "t", command=f"python -c \\\"raise SystemExit('{why}')\\\"")
    git(d, "init", "-q")
    commit_all(d, "toy")
    with pytest.raises(BaselineFailed, match="use --preset cpu") as info:
        Loop.from_dir(d, proposer=Scripted([]), sandbox=LocalSandbox("none")).run()
    assert "The run's log ends with" in str(info.value)


def test_a_timed_out_baseline_names_the_settings_to_raise(toy: Path) -> None:
    slow = FakeSandbox(lambda spec: FakeRun.timeout("step 1\nstep 2\n"))
    with pytest.raises(BaselineFailed) as info:
        Loop.from_dir(toy, proposer=Scripted([]), sandbox=slow).run()
    text = str(info.value)
    assert "time_budget_s" in text and "startup_allowance_s" in text and "step 2" in text


def test_progress_is_logged_and_every_run_is_an_event(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="autoresearch")
    d = make_toy_domain(tmp_path / "t", git=True, noise=0.3)
    events: list[Event] = []
    Loop.from_dir(
        d,
        proposer=Scripted([set_x(3.0)]),
        acceptance=Repeated(repeats=3),
        sandbox=FakeSandbox(toy_run),
        tag="p",
        on_event=events.append,
    ).run()
    runs = [(e.run_kind, e.repeat, e.repeats) for e in events if e.kind == "run"]
    assert runs[0] == ("baseline", 1, 2)  # attempt 1 of 1 + baseline_retries
    assert [r for r in runs if r[0] == "calibration"] == [
        ("calibration", k, 4) for k in (1, 2, 3, 4)
    ]
    assert ("candidate", 1, 3) in runs and ("re-measure", 3, 3) in runs
    assert runs[-1] == ("gate", 1, 1)  # the gate ran before the keep
    assert all(e.experiment_id is not None for e in events if e.run_kind == "candidate")
    logged = [r.getMessage() for r in caplog.records if r.name == "autoresearch"]
    assert any("experiment 2 started: X=3.0" in m for m in logged)
    assert any(m.startswith("experiment 2 keep:") for m in logged)
    assert any("re-measure run 2 of 3" in m for m in logged)


def test_calibration_runs_get_their_own_seeds_and_logs(tmp_path: Path) -> None:
    d = make_toy_domain(tmp_path / "t", git=True, noise=0.3)
    Loop.from_dir(d, proposer=Scripted([set_x(3.0)]), acceptance=Repeated(repeats=3), tag="c").run()
    with open_ledger(d) as led:
        calibration = [r for r in led.runs("c") if r.kind == "calibration"]
        baseline = [r for r in led.runs("c") if r.kind == "baseline"]
    assert len(calibration) == 4
    every = baseline + calibration  # all runs of the base commit
    assert len({r.seed for r in every}) == len(every)
    assert len({r.log_path for r in every}) == len(every)
    assert all(Path(str(r.log_path)).read_text() for r in every)


def ev(cand: list[float], inc: list[float], sigma: float | None = None) -> Evidence:
    return Evidence(tuple(cand), tuple(inc), "minimize", sigma)


def test_reasons_say_better_or_worse() -> None:
    worse = Sequential().decide(ev([4.0], [2.0] * 6, 0.1))
    assert worse.verdict is Verdict.DISCARD
    assert "first run 2 worse than the incumbent's mean" in worse.reason
    better = Greedy().decide(ev([1.5], [2.0]))
    assert better.verdict is Verdict.KEEP and better.reason.startswith("0.5 better")
    assert "worse" in Greedy().decide(ev([2.5], [2.0])).reason


class Loss(Objective):
    """A class objective with no ``objective.metric`` in the config: it names its value."""

    metric = "loss"

    def measure(self, run: RunResult) -> Measurement:
        return Measurement(parse_summary(run.trusted_output())["score"])

    def gate(self, run: RunResult) -> GateResult:
        return GateResult(True, "3 passed")


def test_a_class_objective_names_the_results_column_and_the_kept_commit_says_the_effect(
    toy: Path,
) -> None:
    toml = toy / "autoresearch.toml"
    toml.write_text(toml.read_text().replace('metric = "score"', 'class = "objective:Loss"'))
    (toy / "objective.py").write_text(
        "from autoresearch import GateResult, Measurement, Objective, parse_summary\n\n\n"
        "class Loss(Objective):\n"
        '    metric = "loss"\n\n'
        "    def measure(self, run):\n"
        '        return Measurement(parse_summary(run.trusted_output())["score"])\n\n'
        "    def gate(self, run):\n"
        '        return GateResult(True, "3 passed")\n'
    )
    commit_all(toy, "class objective")
    Loop.from_dir(toy, proposer=Scripted([set_x(3.0)]), tag="o", sandbox=FakeSandbox(toy_run)).run()
    header = (toy / "results.tsv").read_text().splitlines()[0].split("\t")
    assert header[1] == "loss"
    message = git(toy, "log", "-1", "--format=%B", "autoresearch/o")
    assert "loss 11 -> 2 (-9)" in message and "gate: 3 passed" in message
    assert "autoresearch-experiment: 2" in message
    with open_ledger(toy) as led:
        kept = led.history("o")[-1]
        runs = led.runs("o", kept.id)
    head = git(toy, "rev-parse", "autoresearch/o").strip()
    assert kept.commit == head and {r.commit for r in runs} == {head}
    assert git(toy, "rev-parse", f"refs/autoresearch/o/{kept.id}").strip() == head
