"""The baseline: the unmodified target, measured first. A crash or timeout on the user's own
files is tried again (``baseline_retries``) inside one baseline experiment; one that keeps
failing, or that changes files, stops the run with BaselineFailed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import git, open_ledger, set_x

from autoresearch import BaselineFailed, Cause, ExperimentKind, Loop, RunSpec, Status
from autoresearch.execution import LocalSandbox
from autoresearch.testing import FakeRun, FakeSandbox, Scripted, make_toy_domain, toy_run


def failing_first(n: int, failure: Callable[[], FakeRun]) -> FakeSandbox:
    """The toy's runs, the first ``n`` of which fail."""
    calls = 0

    def handler(spec: RunSpec) -> str | FakeRun:
        nonlocal calls
        calls += 1
        return failure() if calls <= n else toy_run(spec)

    return FakeSandbox(handler)


@pytest.mark.parametrize("failure", [FakeRun.crash, FakeRun.timeout], ids=["crash", "timeout"])
def test_a_baseline_that_fails_once_is_one_experiment_with_two_runs(
    toy: Path, failure: Callable[[], FakeRun]
) -> None:
    sandbox = failing_first(1, failure)
    messages: list[str] = []
    summary = Loop.from_dir(
        toy,
        proposer=Scripted([set_x(3.0)]),
        tag="b",
        sandbox=sandbox,
        on_event=lambda e: messages.append(e.message),
    ).run()
    with open_ledger(toy) as led:
        recs = led.history("b")
        runs = led.runs("b")
    baselines = [r for r in recs if r.kind is ExperimentKind.BASELINE]
    assert len(baselines) == 1 and baselines[0].status is Status.KEEP
    assert baselines[0].n_runs == 2 and baselines[0].value == pytest.approx(11.0)
    first, second = (r for r in runs if r.kind == "baseline")
    assert first.status == str(failure().failure) and second.status == "ok"
    assert first.log_path != second.log_path and first.seed != second.seed
    assert any("baseline attempt 1 of 2 failed" in m for m in messages)
    # The loop went on to the candidate.
    assert [r.status for r in recs] == [Status.KEEP, Status.KEEP] and summary.best_value == 2.0


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_a_baseline_that_always_crashes_stops_after_every_attempt(toy: Path, retries: int) -> None:
    always = FakeSandbox(lambda spec: FakeRun.crash("Traceback: boom\n"))
    loop = Loop.from_dir(
        toy,
        proposer=Scripted([set_x(3.0)]),
        tag="c",
        sandbox=always,
        overrides={"baseline_retries": retries},
    )
    with pytest.raises(BaselineFailed, match="exit code 1") as info:
        loop.run()
    assert len(always.specs) == 1 + retries
    assert (f"({1 + retries} attempts)" in str(info.value)) is (retries > 0)
    with open_ledger(toy) as led:
        (rec,) = led.history("c")  # no candidate was proposed
        runs = led.runs("c")
    assert rec.kind is ExperimentKind.BASELINE and rec.status is Status.CRASH
    assert rec.cause is Cause.RUN_FAILED and rec.n_runs == 1 + retries
    assert [r.kind for r in runs] == ["baseline"] * (1 + retries)


def test_a_baseline_that_changes_files_is_not_tried_again(toy: Path) -> None:
    def tamper(spec: RunSpec) -> str | FakeRun:
        (spec.workdir / "run.py").write_text("# tampered\n")
        return toy_run(spec)

    tampering = FakeSandbox(tamper)
    with pytest.raises(BaselineFailed, match=r"files changed during the run: run\.py"):
        Loop.from_dir(toy, proposer="knob", tag="t", sandbox=tampering).run()
    assert len(tampering.specs) == 1


def test_a_real_baseline_that_rewrites_the_harness_stops_the_run(
    tmp_path: Path, isolation: str
) -> None:
    d = make_toy_domain(
        tmp_path / "t", command="python run.py && echo tampered >> run.py", git=True
    )
    # In namespaces the fixed file is read-only (the write fails the run); without them the
    # engine's after-run check finds the change.
    expected = r"crash" if isolation == "namespaces" else r"files changed during the run: run\.py"
    sandbox = LocalSandbox(isolation)  # type: ignore[arg-type]
    with pytest.raises(BaselineFailed, match=expected):
        Loop.from_dir(d, proposer="knob", tag="tamper", sandbox=sandbox).run()
    assert git(d, "status", "--porcelain") == ""
    logs = "".join(p.read_text() for p in (d / ".autoresearch").rglob("run*.log"))
    assert ("Read-only file system" in logs) == (isolation == "namespaces")


def test_baseline_alone_records_one_experiment(toy: Path) -> None:
    rec = Loop.from_dir(toy, tag="only", sandbox=FakeSandbox()).baseline()
    assert rec.kind is ExperimentKind.BASELINE and rec.value == pytest.approx(11.0)
    with open_ledger(toy) as led:
        assert [r.kind for r in led.runs("only")] == ["baseline"]
